package main

import (
	"bytes"
	"mime"
	"net/http"
	"os"
	"testing"
)

// TestOpenAPIServed checks that the real server serves openapi.yaml as
// shipped, with a YAML content type.
func TestOpenAPIServed(t *testing.T) {
	want, err := os.ReadFile("openapi.yaml")
	if err != nil {
		t.Fatalf("read openapi.yaml: %v", err)
	}
	if len(want) == 0 {
		t.Fatal("openapi.yaml is empty")
	}
	s := startServer(t, nil)
	resp, got := s.doResp("GET", "/openapi.yaml", "", nil, nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /openapi.yaml = %d %s; want 200", resp.StatusCode, got)
	}
	ct := resp.Header.Get("Content-Type")
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil {
		t.Errorf("GET /openapi.yaml Content-Type = %q: %v", ct, err)
	}
	switch mt {
	case "application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml":
	default:
		t.Errorf("GET /openapi.yaml Content-Type = %q; want a YAML type such as application/yaml", ct)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("GET /openapi.yaml body = %d bytes differing from ./openapi.yaml (%d bytes); want the file byte for byte", len(got), len(want))
	}
}
