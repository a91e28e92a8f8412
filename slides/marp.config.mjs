// Marp settings for the workshop deck, used by `make slides` (py/deck/build.py).
// Everything must work offline: no emoji images from a CDN, no remote fonts (the default theme
// uses system fonts), and diagrams arrive as data: URIs, which markdown-it refuses for SVG
// unless told otherwise (it fears scripts in SVG; these are our own hand-written files).
export default {
  lang: 'en',
  html: true, // our own captions: <div class="src">
  allowLocalFiles: false,
  options: {
    emoji: { shortcode: false, unicode: false },
    math: false,
  },
  engine: ({ marp }) => {
    const validate = marp.markdown.validateLink
    marp.markdown.validateLink = (url) => /^data:image\/svg\+xml;base64,/i.test(url) || validate(url)
    return marp
  },
}
