// Response headers of the web console's files, wherever they are served: by the API on Node
// (src/routes/console.ts) and by Workers static assets (vite.config.ts writes them into the build's
// `_headers`). The console loads nothing from another origin: scripts, styles and fonts are its own files,
// and it talks only to this API.
export const CONSOLE_HEADERS: Readonly<Record<string, string>> = {
  'content-security-policy': [
    "default-src 'none'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self' data:",
    "font-src 'self'",
    "connect-src 'self'",
    "base-uri 'none'",
    "form-action 'none'",
    "frame-ancestors 'none'",
  ].join('; '),
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'x-frame-options': 'DENY',
};

/** index.html is revalidated; the hashed files under assets/ never change under their name. */
export const CONSOLE_CACHE = { page: 'no-cache', hashed: 'public, max-age=31536000, immutable' };
