package api_test

import (
	"fmt"
	"os"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"go.yaml.in/yaml/v3"

	"github.com/heraldchat/herald/api"
	"github.com/heraldchat/herald/internal/event"
)

// The contract test: openapi.yaml and the routes the server registers must
// describe the same API.

const specPath = "../openapi.yaml"

// httpMethods are the OpenAPI operation keys of a path item. HEAD and
// OPTIONS are left out on both sides: they are answered by the router and
// the CORS middleware, not by documented operations.
var httpMethods = []string{"get", "put", "post", "delete", "patch", "trace"}

// loadSpec parses openapi.yaml into plain maps and slices.
func loadSpec(t *testing.T) map[string]any {
	t.Helper()
	b, err := os.ReadFile(specPath)
	if err != nil {
		t.Fatalf("read %s: %v", specPath, err)
	}
	var doc any
	if err := yaml.Unmarshal(b, &doc); err != nil {
		t.Fatalf("parse %s: %v", specPath, err)
	}
	m, ok := asMap(doc)
	if !ok {
		t.Fatalf("%s is a %T; want a mapping", specPath, doc)
	}
	return m
}

// asMap returns v as a map with string keys, whichever map type the YAML
// decoder chose.
func asMap(v any) (map[string]any, bool) {
	switch m := v.(type) {
	case map[string]any:
		return m, true
	case map[any]any:
		out := make(map[string]any, len(m))
		for k, v := range m {
			out[fmt.Sprint(k)] = v
		}
		return out, true
	}
	return nil, false
}

// operation is one documented method and path.
type operation struct {
	method, path string
	op           map[string]any
}

func (o operation) String() string { return o.method + " " + o.path }

// operations lists the documented operations, sorted.
func operations(t *testing.T, doc map[string]any) []operation {
	t.Helper()
	paths, ok := asMap(doc["paths"])
	if !ok {
		t.Fatalf("openapi.yaml: paths is %T; want a mapping", doc["paths"])
	}
	var ops []operation
	for path, item := range paths {
		pi, ok := asMap(item)
		if !ok {
			t.Fatalf("openapi.yaml: paths[%q] is %T; want a mapping", path, item)
		}
		for _, m := range httpMethods {
			if v, found := pi[m]; found {
				op, ok := asMap(v)
				if !ok {
					t.Fatalf("openapi.yaml: %s %s is %T; want a mapping", strings.ToUpper(m), path, v)
				}
				ops = append(ops, operation{strings.ToUpper(m), path, op})
			}
		}
	}
	sort.Slice(ops, func(i, j int) bool { return ops[i].String() < ops[j].String() })
	return ops
}

// newServer builds the API without a store or hub: construction must not
// touch them. The registry is set because /metrics is routed only with one,
// as it always is in the real server.
func newServer(t *testing.T, cfg api.Config) (srv *api.Server) {
	t.Helper()
	defer func() {
		if r := recover(); r != nil {
			t.Fatalf("api.New(nil store, nil hub) panicked: %v; construction must not use the store or hub", r)
		}
	}()
	return api.New(nil, nil, api.NewAuth([]byte("x"), nil), cfg)
}

// routes returns the server's routes as "METHOD /path/{param}", without
// HEAD and OPTIONS.
func routes(srv *api.Server) []string {
	var out []string
	for _, r := range srv.Routes() {
		if r[0] == "HEAD" || r[0] == "OPTIONS" {
			continue
		}
		out = append(out, r[0]+" "+r[1])
	}
	sort.Strings(out)
	return slices.Compact(out)
}

func TestOpenAPIVersion(t *testing.T) {
	doc := loadSpec(t)
	v, _ := doc["openapi"].(string)
	if !strings.HasPrefix(v, "3.1") {
		t.Errorf("openapi = %q; want 3.1.x", v)
	}
}

func TestOpenAPIRoutes(t *testing.T) {
	doc := loadSpec(t)
	documented := map[string]bool{}
	for _, o := range operations(t, doc) {
		documented[o.String()] = true
	}

	t.Run("bare config", func(t *testing.T) {
		// The zero Config must build too, without touching the nil store and hub.
		if got := routes(newServer(t, api.Config{})); len(got) == 0 {
			t.Fatalf("Routes() of api.New(..., Config{}) is empty; want the API's routes")
		}
	})

	srv := newServer(t, api.Config{Registry: prometheus.NewRegistry()})
	routed := map[string]bool{}
	for _, r := range routes(srv) {
		routed[r] = true
	}

	t.Run("every route documented", func(t *testing.T) {
		for r := range routed {
			t.Run(r, func(t *testing.T) {
				if !documented[r] {
					t.Errorf("route %s is registered in api/server.go but missing from openapi.yaml", r)
				}
			})
		}
	})
	t.Run("every operation routed", func(t *testing.T) {
		for o := range documented {
			t.Run(o, func(t *testing.T) {
				if !routed[o] {
					t.Errorf("operation %s is in openapi.yaml but no route serves it", o)
				}
			})
		}
	})
}

func TestOpenAPIRefs(t *testing.T) {
	doc := loadSpec(t)
	refs := map[string][]string{} // ref → where it occurs
	collectRefs(doc, "#", refs)
	if len(refs) == 0 {
		t.Fatal("openapi.yaml has no $ref; the walk is broken")
	}
	for ref, at := range refs {
		t.Run(ref, func(t *testing.T) {
			if _, err := resolve(doc, ref); err != nil {
				t.Errorf("resolve(%q) at %s: %v", ref, strings.Join(at, ", "), err)
			}
		})
	}
}

// collectRefs records every $ref value under v with the pointer of where it
// was found.
func collectRefs(v any, at string, refs map[string][]string) {
	if m, ok := asMap(v); ok {
		for k, c := range m {
			if k == "$ref" {
				if s, ok := c.(string); ok {
					refs[s] = append(refs[s], at)
					continue
				}
			}
			collectRefs(c, at+"/"+escapePointer(k), refs)
		}
		return
	}
	if l, ok := v.([]any); ok {
		for i, c := range l {
			collectRefs(c, at+"/"+strconv.Itoa(i), refs)
		}
	}
}

func escapePointer(s string) string {
	return strings.ReplaceAll(strings.ReplaceAll(s, "~", "~0"), "/", "~1")
}

// resolve follows a local JSON pointer ("#/components/schemas/Room").
func resolve(doc map[string]any, ref string) (any, error) {
	rest, ok := strings.CutPrefix(ref, "#/")
	if !ok {
		return nil, fmt.Errorf("not a local reference")
	}
	var node any = doc
	for _, part := range strings.Split(rest, "/") {
		part = strings.ReplaceAll(strings.ReplaceAll(part, "~1", "/"), "~0", "~")
		if m, ok := asMap(node); ok {
			next, found := m[part]
			if !found {
				return nil, fmt.Errorf("no %q", part)
			}
			node = next
			continue
		}
		if l, ok := node.([]any); ok {
			i, err := strconv.Atoi(part)
			if err != nil || i < 0 || i >= len(l) {
				return nil, fmt.Errorf("no index %q", part)
			}
			node = l[i]
			continue
		}
		return nil, fmt.Errorf("%q is inside a %T", part, node)
	}
	return node, nil
}

var pathParam = regexp.MustCompile(`\{([^}]+)\}`)

func TestOpenAPIOperations(t *testing.T) {
	doc := loadSpec(t)
	ids := map[string]string{} // operationId → operation
	for _, o := range operations(t, doc) {
		t.Run(o.String(), func(t *testing.T) {
			id, _ := o.op["operationId"].(string)
			if id == "" {
				t.Errorf("%s: operationId = %q; want one", o, id)
			} else if prev, dup := ids[id]; dup {
				t.Errorf("%s: operationId %q is also used by %s; want unique ids", o, id, prev)
			} else {
				ids[id] = o.String()
			}
			if s, _ := o.op["summary"].(string); strings.TrimSpace(s) == "" {
				t.Errorf("%s: summary = %q; want one", o, s)
			}
			responses, _ := asMap(o.op["responses"])
			if len(responses) == 0 {
				t.Errorf("%s: responses = %v; want at least one", o, o.op["responses"])
			}

			// Each {param} of the path is declared as a path parameter.
			declared := map[string]bool{}
			params, _ := o.op["parameters"].([]any)
			for _, p := range params {
				pm, _ := asMap(p)
				if ref, ok := pm["$ref"].(string); ok {
					r, err := resolve(doc, ref)
					if err != nil {
						continue // reported by TestOpenAPIRefs
					}
					pm, _ = asMap(r)
				}
				if pm["in"] == "path" {
					name, _ := pm["name"].(string)
					declared[name] = true
				}
			}
			for _, m := range pathParam.FindAllStringSubmatch(o.path, -1) {
				if !declared[m[1]] {
					t.Errorf("%s: path parameter %q is not declared in parameters", o, m[1])
				}
			}

			if !strings.HasPrefix(o.path, "/v1/") || o.path == "/v1/stream" {
				return
			}
			if _, ok := responses["401"]; !ok {
				t.Errorf("%s: responses have no 401; every authenticated /v1 operation must declare it", o)
			}
			// The server API takes an API key, and nothing else does.
			scheme := "bearerAuth"
			if strings.HasPrefix(o.path, "/v1/server/") {
				scheme = "apiKeyAuth"
			}
			if !requiresScheme(o.op, scheme) || len(o.op["security"].([]any)) != 1 {
				t.Errorf("%s: security = %v; want %s alone", o, o.op["security"], scheme)
			}
		})
	}
}

// requiresScheme reports whether op's security lists scheme.
func requiresScheme(op map[string]any, scheme string) bool {
	reqs, _ := op["security"].([]any)
	for _, r := range reqs {
		if m, ok := asMap(r); ok {
			if _, found := m[scheme]; found {
				return true
			}
		}
	}
	return false
}

func TestOpenAPIStreamEvents(t *testing.T) {
	doc := loadSpec(t)
	var streamOp map[string]any
	for _, o := range operations(t, doc) {
		if o.String() == "GET /v1/stream" {
			streamOp = o.op
		}
	}
	if streamOp == nil {
		t.Fatal("openapi.yaml has no GET /v1/stream")
	}
	t.Run("event stream response", func(t *testing.T) {
		responses, _ := asMap(streamOp["responses"])
		ok, _ := asMap(responses["200"])
		content, _ := asMap(ok["content"])
		if _, found := content["text/event-stream"]; !found {
			t.Errorf("GET /v1/stream 200 content types = %v; want text/event-stream", keys(content))
		}
	})
	events, ok := asMap(streamOp["x-sse-events"])
	if !ok {
		t.Fatalf("GET /v1/stream x-sse-events = %v; want a mapping of event name to schema", streamOp["x-sse-events"])
	}
	// Every event type the server sends has a documented payload.
	types := []string{
		event.Ready, event.Resync,
		event.MessageCreated, event.MessageUpdated, event.MessageDeleted,
		event.MemberJoined, event.MemberLeft, event.ReceiptUpdated,
		event.RoomUpdated, event.RoomDeleted, event.Custom,
		event.InvitationCreated, event.InvitationDeleted,
		event.PresenceChanged, event.RoomOnline, event.PresenceStale, event.TypingStarted, event.TypingStopped,
	}
	for _, name := range types {
		t.Run(name, func(t *testing.T) {
			ev, _ := asMap(events[name])
			ref, _ := ev["$ref"].(string)
			if ref == "" {
				t.Fatalf("x-sse-events[%q] = %v; want a schema $ref", name, events[name])
			}
			if _, err := resolve(doc, ref); err != nil {
				t.Errorf("x-sse-events[%q]: resolve(%q): %v", name, ref, err)
			}
		})
	}
}

func keys(m map[string]any) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
