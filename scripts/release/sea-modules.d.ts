/** The virtual modules bundle.ts generates for sea-entry.ts. */
declare module 'ckan-migrate-sea:plugins' {
  /** One entry per plugin: {pjson, manifest, modules: {commandId: () => import(module)}}, ours first. */
  const plugins: unknown[]
  export default plugins
}
declare module 'ckan-migrate-sea:version' {
  /** dist/lib/cli/version.js's versionText (src/lib/cli/version.ts). */
  export function versionText(version: string): string
}
declare module 'ckan-migrate-sea:figures' {
  /** dist/lib/report/figure-drawer.js's preloadFigureDrawer (src/lib/report/figure-drawer.ts). */
  export function preloadFigureDrawer(argv: readonly string[]): void
}
