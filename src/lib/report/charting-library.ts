/**
 * The charting library of the report pages, in one place: the parts of Observable Plot the charts
 * draw with, and the small DOM (linkedom) they render on. `npm run build` replaces the compiled
 * copy of this file with one minified bundle of just these (scripts/build/bundle-charting.ts),
 * which Node loads in a fraction of the time the thousand files of Plot, d3 and linkedom take
 * (docs/benchmarks.md, the readiness page); from the sources (bin/dev.js, the tests) it is these
 * imports.
 */
export {barX, plot, rectY, ruleX, ruleY, stackY, text} from '@observablehq/plot'
export {DOMParser} from 'linkedom'
