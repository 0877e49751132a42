package main

// The React hooks (web/react.js) rendered in Chromium with React from the
// npm registry, which the test installs into a temporary folder: the
// README's example component, as the README has it (its JSX compiled in
// the page by Babel's standalone build, also from npm), and a probe of
// what else the hooks give, in StrictMode, against a real server.

import (
	"fmt"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"
)

// npmInstall installs packages from the npm registry into a new folder and
// returns its node_modules.
func npmInstall(t *testing.T, packages ...string) string {
	t.Helper()
	npm, err := exec.LookPath("npm")
	if err != nil {
		t.Fatalf("npm is needed: the React test installs %s from the npm registry into a temporary folder (Debian: apt-get install npm): %v", strings.Join(packages, ", "), err)
	}
	dir := t.TempDir()
	cmd := exec.Command(npm, append([]string{"install", "--no-audit", "--no-fund", "--no-package-lock", "--loglevel=error"}, packages...)...)
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("npm install %s: %v\n%s", strings.Join(packages, " "), err, out)
	}
	return filepath.Join(dir, "node_modules")
}

// readmeReact is the README's React example.
func readmeReact(t *testing.T) string {
	t.Helper()
	readme := string(mustRead(t, "README.md"))
	_, rest, ok := strings.Cut(readme, "\n### React\n")
	if !ok {
		t.Fatal("README.md has no ### React section")
	}
	_, rest, ok = strings.Cut(rest, "```jsx\n")
	if !ok {
		t.Fatal("README.md's React section has no jsx block")
	}
	example, _, _ := strings.Cut(rest, "```")
	return example
}

// reactPage loads React and ReactDOM (CommonJS, as npm has them) with a
// small require, maps the bare imports of the hooks and of the README's
// example to them, compiles the example and imports it.
const reactPage = `<!doctype html>
<meta charset="utf-8">
<title>hooks test</title>
<script type="importmap">
{"imports": {
  "react": "/test/react-shim.js",
  "react/jsx-runtime": "/test/jsx-runtime-shim.js",
  "herald-client/react": "/test/web/react.js"
}}
</script>
<script src="/test/node_modules/@babel/standalone/babel.min.js"></script>
<script>
// A CommonJS require over synchronous requests, enough for React's files.
(() => {
  const cache = new Map();
  const resolve = (name, dir) => {
    if (name.startsWith(".")) {
      const p = new URL(name, location.origin + dir).pathname;
      return p.endsWith(".js") ? p : p + ".js";
    }
    const [pkg, ...sub] = name.split("/");
    return "/test/node_modules/" + pkg + "/" + (sub.length ? sub.join("/") + ".js" : "index.js");
  };
  const load = (path) => {
    if (cache.has(path)) return cache.get(path).exports;
    const xhr = new XMLHttpRequest();
    xhr.open("GET", path, false);
    xhr.send();
    if (xhr.status !== 200) throw new Error("require: " + path + ": " + xhr.status);
    const module = { exports: {} };
    cache.set(path, module);
    const dir = path.slice(0, path.lastIndexOf("/") + 1);
    new Function("module", "exports", "require", "process", xhr.responseText + "\n//# sourceURL=" + path)(
      module, module.exports, (name) => load(resolve(name, dir)), { env: { NODE_ENV: "development" } });
    return module.exports;
  };
  window.React = load(resolve("react", "/"));
  window.ReactDOMClient = load(resolve("react-dom/client", "/"));
  window.JSXRuntime = load(resolve("react/jsx-runtime", "/"));
})();
</script>
<div id="example"></div>
<div id="probe"></div>
<script type="module">
const src = await (await fetch("/test/example.jsx")).text();
const { code } = Babel.transform(src, { presets: [["react", { runtime: "automatic" }]] });
const example = await import(URL.createObjectURL(new Blob([code], { type: "text/javascript" })));
window.hooks = await import("herald-client/react");
window.Chat = example.Chat;
</script>
`

const reactShim = `const R = window.React;
export default R;
export const { Children, Component, Fragment, StrictMode, createContext, createElement, forwardRef, memo,
  useCallback, useContext, useEffect, useId, useLayoutEffect, useMemo, useReducer, useRef, useState,
  useSyncExternalStore, useTransition, useDeferredValue } = R;
`

const jsxShim = `export const { jsx, jsxs, Fragment } = window.JSXRuntime;
`

func TestBrowserReact(t *testing.T) {
	modules := npmInstall(t, "react", "react-dom", "@babel/standalone")
	s := startServer(t, map[string]string{"HERALD_PRESENCE_GRACE": "0s"})
	app := newApp(t, s.URL)
	app.files["/test/node_modules/"] = modules
	app.files["/test/web/"] = "web"
	app.inline["/test/react.html"] = reactPage
	app.inline["/test/react-shim.js"] = reactShim
	app.inline["/test/jsx-runtime-shim.js"] = jsxShim
	app.inline["/test/example.jsx"] = readmeReact(t)

	alice, bob, carol := s.token("alice"), s.token("bob"), s.token("carol")
	room := s.createRoom(bob, "react", false)
	other := s.createRoom(bob, "other", false)
	for _, tok := range []string{alice, carol} {
		s.must(http.StatusOK, "POST", "/v1/rooms/"+room+"/join", tok, nil, nil)
	}
	s.must(http.StatusOK, "POST", "/v1/rooms/"+other+"/join", carol, nil, nil)
	var history []string
	for i := range 55 {
		history = append(history, fmt.Sprintf("h%02d", i))
		s.post(bob, room, history[i])
	}
	watch := s.stream(bob, "")

	p := person(t, "react")
	p.run("open the page", chromedp.Navigate(app.URL+"/test/react.html"))
	p.waitJS("React and the README's example", `typeof window.Chat === "function" && window.hooks?.useHerald !== undefined`)
	var version string
	p.eval(`React.version`, &version)
	t.Logf("React %s from the npm registry", version)

	// The README's example, as alice, in StrictMode (effects run twice).
	p.eval(fmt.Sprintf(`(() => {
		const h = React.createElement;
		window.exampleRoot = ReactDOMClient.createRoot(document.getElementById("example"));
		exampleRoot.render(h(React.StrictMode, null, h(Chat, { token: %s, roomId: %s })));
		return null;
	})()`, jsString(alice), jsString(room)), nil)
	items := `JSON.stringify([...document.querySelectorAll("#example li")].map((li) => li.textContent))`
	p.waitJS("live", `document.querySelector("#example .state")?.textContent === "live"`)
	want := func(texts ...string) string {
		out := make([]string, len(texts))
		for i, t := range texts {
			out[i] = "Bob " + t
		}
		return jsString(jsonOf(out))
	}
	p.waitJS("the newest page", items+` === `+want(history[5:]...))
	p.run("older", chromedp.Click(chromedp.CSS("#example button")))
	p.waitJS("all of history, and no more to load", items+` === `+want(history...)+` && !document.querySelector("#example button")`)

	// Live messages and typing.
	s.must(http.StatusNoContent, "POST", "/v1/rooms/"+room+"/typing", bob, map[string]any{"typing": true}, nil)
	p.waitJS("bob typing", `document.querySelector("#example .typing").textContent === "Bob"`)
	s.post(bob, room, "hi alice")
	p.waitJS("bob's message, and his typing gone", items+` === `+want(append(append([]string{}, history...), "hi alice")...)+
		` && document.querySelector("#example .typing").textContent === ""`)

	// Alice reads (the example marks read what it shows), types and sends.
	for f := watch.WaitFor("receipt:updated"); !strings.Contains(f.Data, `"user":"alice"`); f = watch.WaitFor("receipt:updated") {
	}
	p.run("type", typeInto(chromedp.CSS("#example input"), "hello bob"))
	for f := watch.WaitFor("typing:started"); !strings.Contains(f.Data, `"user":"alice"`); f = watch.WaitFor("typing:started") {
	}
	p.run("send", typeInto(chromedp.CSS("#example input"), "\n"))
	p.waitJS("her message, once, and the input empty", `[...document.querySelectorAll("#example li")].filter((li) => li.textContent === "Alice hello bob").length === 1 &&
		document.querySelector("#example input").value === ""`)
	for f := watch.WaitFor("message:created"); !strings.Contains(f.Data, `"text":"hello bob"`); f = watch.WaitFor("message:created") {
	}

	// A probe of the rest, as carol: rooms with unread counts, presence,
	// receipts.
	p.eval(fmt.Sprintf(`(() => {
		const h = React.createElement;
		function Probe({ token, roomId }) {
			const herald = hooks.useHerald({ token });
			const room = hooks.useRoom(herald, roomId);
			return h("pre", { id: "probe-out" }, JSON.stringify({
				state: herald.state, user: herald.user,
				rooms: Object.fromEntries(herald.rooms.map((r) => [r.name, r.unread])),
				members: Object.fromEntries(room.members.map((m) => [m.user, m.status])),
				receipts: room.receipts, loaded: room.loaded,
			}));
		}
		window.probeRoot = ReactDOMClient.createRoot(document.getElementById("probe"));
		probeRoot.render(h(React.StrictMode, null, h(Probe, { token: %s, roomId: %s })));
		return null;
	})()`, jsString(carol), jsString(room)), nil)
	probe := func(what, cond string) {
		t.Helper()
		p.waitJS(what, `(() => { const p = JSON.parse(document.querySelector("#probe-out")?.textContent ?? "null"); return p && (`+cond+`); })()`)
	}
	probe("carol live in the room", `p.state === "live" && p.user === "carol" && p.loaded`)
	probe("alice and bob online", `p.members.alice === "online" && p.members.bob === "online" && p.members.carol === "online"`)
	last := s.post(bob, other, "in the other room")
	probe("one unread in the other room", `p.rooms.other === 1`)
	s.must(http.StatusNoContent, "POST", "/v1/rooms/"+room+"/read", bob, map[string]any{"message_id": last - 1}, nil)
	probe("bob's receipt", fmt.Sprintf(`p.receipts.bob === %d`, last-1))

	// Unmounted, the example's client closes: alice goes offline.
	p.eval(`(exampleRoot.unmount(), null)`, nil)
	probe("alice offline", `p.members.alice === "offline"`)
	p.eval(`(probeRoot.unmount(), null)`, nil)
}
