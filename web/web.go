// Package web holds what Herald serves to browsers: the client module
// (herald.js, at /client.js) and the dev chat page (chat.html, at / with
// --dev). The module is also a package of its own, with its TypeScript
// declarations and the React hook beside it, for apps that install it
// from a checkout or with npm pack.
package web

import _ "embed"

// Client is herald.js, the browser client: one ES module with no
// dependencies.
//
//go:embed herald.js
var Client []byte

// Page is the chat page, one HTML file that imports /client.js.
//
//go:embed chat.html
var Page []byte
