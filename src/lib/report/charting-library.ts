/**
 * The charting library of the report pages, in one place: Observable Plot and the small DOM
 * (linkedom) it renders on. `npm run build` replaces the compiled copy of this file with one
 * minified bundle of both (scripts/build/bundle-charting.ts), which Node loads in about a third of
 * the time the thousand files of Plot, d3 and linkedom take (docs/benchmarks.md, the readiness
 * page); from the sources (bin/dev.js, the tests) it is these two imports.
 */
export * as Plot from '@observablehq/plot'
export {parseHTML} from 'linkedom'
