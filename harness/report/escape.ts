// Text for XML and HTML (the JUnit file and the pages).

/** Text and attribute values; control characters go (a console line may carry them). */
export const esc = (s: string) =>
  s
    // eslint-disable-next-line no-control-regex
    .replace(/[\x00-\x08\x0b\x0c\x0e-\x1f]/g, '')
    .replace(/&/g, '&amp;')
    .replace(/</g, '&lt;')
    .replace(/>/g, '&gt;')
    .replace(/"/g, '&quot;')
    .replace(/'/g, '&#39;');
