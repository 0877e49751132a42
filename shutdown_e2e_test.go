package main

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// Shutdown drains: /readyz answers 503 first, for --drain-delay, while the
// rest is still served; then streams end with their closing frame, a
// request whose client hung is cut at --shutdown-timeout, and the server
// returns no error, the drain having done its job.
func TestShutdownDrains(t *testing.T) {
	s := startServer(t, map[string]string{
		"HERALD_DRAIN_DELAY": "2s", "HERALD_SHUTDOWN_TIMEOUT": "500ms", "HERALD_READ_TIMEOUT": "1m",
	})
	alice := s.token("alice")
	room := s.createRoom(alice, "drain", false)
	c := s.stream(alice, "")
	// A client that declared a body and stopped sending: its request is
	// in flight until the shutdown deadline.
	host := strings.TrimPrefix(s.URL, "http://")
	_, hung := rawRequest(t, s.URL, "POST /v1/rooms/"+room+"/messages HTTP/1.1\r\nHost: "+host+
		"\r\nAuthorization: Bearer "+alice+"\r\nContent-Length: 100", `{"text":"hu`)

	s.cancel() // as SIGTERM does
	s.cancel = nil
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	for {
		resp, err := client.Get(s.URL + "/readyz")
		if err != nil {
			t.Fatalf("GET /readyz while draining: %v; want 503 before the server stops accepting", err)
		}
		var r struct{ Status string }
		json.NewDecoder(resp.Body).Decode(&r)
		resp.Body.Close()
		if resp.StatusCode == http.StatusServiceUnavailable && r.Status == "shutting down" {
			break
		}
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET /readyz while draining = %d %+v; want 503 shutting down", resp.StatusCode, r)
		}
		time.Sleep(5 * time.Millisecond)
	}
	// Still served while the load balancer takes the server out.
	req, _ := http.NewRequest("GET", s.URL+"/v1/rooms", nil)
	req.Header.Set("Authorization", "Bearer "+alice)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("GET /v1/rooms while draining: %v; want 200", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("GET /v1/rooms while draining = %d; want 200", resp.StatusCode)
	}

	if !hasComment(c.Ended(), "closing shutdown") {
		t.Errorf("the stream did not end with : closing shutdown")
	}
	if _, err := io.ReadAll(hung); err != nil {
		t.Errorf("the hung request's connection: %v; want it closed by the server", err)
	}
	select {
	case err := <-s.stopped:
		if err != nil {
			t.Errorf("serve returned %v after a drain that cut a hung client; want nil (exit 0)", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the server did not stop within 30s")
	}
}
