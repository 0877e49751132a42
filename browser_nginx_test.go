package main

// The chat page through a real nginx, configured as the README says: the
// app's page from nginx, Herald behind it, HTTP/2 over TLS to the browser.
// Herald stops for longer than a retry (nginx answers 502, and EventSource
// gives up), comes back, and the messages posted right then reach the
// page once each, in order, without a reload.

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/heraldchat/herald/api"
	"github.com/heraldchat/herald/store/storetest"
	"github.com/heraldchat/herald/web"
)

// nginxPath finds nginx, which Debian keeps in /usr/sbin.
func nginxPath(t *testing.T) string {
	t.Helper()
	if p, err := exec.LookPath("nginx"); err == nil {
		return p
	}
	if _, err := os.Stat("/usr/sbin/nginx"); err == nil {
		return "/usr/sbin/nginx"
	}
	t.Fatal("nginx is needed for TestBrowserNginx and was not found: make test installs it (.ci/deps); on Debian, apt-get install nginx-light")
	return ""
}

// readmeNginx is the nginx configuration of the README's Proxies and CDNs
// section.
func readmeNginx(t *testing.T) string {
	t.Helper()
	readme := string(mustRead(t, "README.md"))
	_, rest, ok := strings.Cut(readme, "\n### nginx\n")
	if !ok {
		t.Fatal("README.md has no ### nginx section")
	}
	_, rest, ok = strings.Cut(rest, "```nginx\n")
	if !ok {
		t.Fatal("README.md's nginx section has no nginx block")
	}
	conf, _, _ := strings.Cut(rest, "```")
	return conf
}

// substitute replaces what pattern matches in s with repl, and fails when
// it matches nothing: the README changed under the test.
func substitute(t *testing.T, s, pattern, repl string) string {
	t.Helper()
	re := regexp.MustCompile(pattern)
	if !re.MatchString(s) {
		t.Fatalf("the README's nginx configuration has no %s", pattern)
	}
	return re.ReplaceAllLiteralString(s, repl)
}

// startNginx runs nginx with the README's configuration, serving the chat
// page as the app's page and proxying herald, on a free port with the
// test's certificate; it returns the https URL.
func startNginx(t *testing.T, herald string) (url, accessLog string) {
	t.Helper()
	bin := nginxPath(t)
	dir := t.TempDir()
	site := filepath.Join(dir, "site")
	if err := os.MkdirAll(site, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(site, "index.html"), web.Page, 0o644); err != nil {
		t.Fatal(err)
	}
	certFile, keyFile, _ := testCert(t, dir, "1")
	port, err := storetest.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	conf := readmeNginx(t)
	conf = substitute(t, conf, `server 127\.0\.0\.1:8080;`, "server "+herald+";")
	conf = substitute(t, conf, `listen 443 ssl http2;`, fmt.Sprintf("listen 127.0.0.1:%d ssl http2;", port))
	conf = substitute(t, conf, `ssl_certificate\s+\S+;`, "ssl_certificate "+certFile+";")
	conf = substitute(t, conf, `ssl_certificate_key\s+\S+;`, "ssl_certificate_key "+keyFile+";")
	conf = substitute(t, conf, `root /srv/app;`, "root "+site+";")
	// The chat page signs in with dev tokens.
	conf = substitute(t, conf, `\n}\s*$`, "\n    location /dev/ {\n        proxy_pass http://herald;\n    }\n}\n")

	accessLog = filepath.Join(dir, "access.log")
	who := ""
	if os.Geteuid() == 0 {
		// Workers would run as nobody, who cannot read the test's folders.
		if u, err := user.Current(); err == nil {
			who = "user " + u.Username + ";"
		}
	}
	main := fmt.Sprintf(`%s
worker_processes 1;
pid %[2]s/nginx.pid;
error_log %[2]s/error.log warn;
events { worker_connections 256; }
http {
    types { text/html html; text/javascript js; }
    default_type application/octet-stream;
    log_format test '$status $request_method $uri';
    access_log %[3]s test;
    client_body_temp_path %[2]s/body;
    proxy_temp_path %[2]s/proxy;
    fastcgi_temp_path %[2]s/fastcgi;
    uwsgi_temp_path %[2]s/uwsgi;
    scgi_temp_path %[2]s/scgi;
%[4]s
}
`, who, dir, accessLog, conf)
	confFile := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(confFile, []byte(main), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-p", dir, "-e", filepath.Join(dir, "error.log"), "-c", confFile, "-g", "daemon off;")
	cmd.Stdout, cmd.Stderr = t.Output(), t.Output()
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() {
		cmd.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		<-exited
		if t.Failed() {
			if b, err := os.ReadFile(filepath.Join(dir, "error.log")); err == nil {
				t.Logf("nginx error.log:\n%s", b)
			}
		}
	})
	url = fmt.Sprintf("https://127.0.0.1:%d", port)
	client := &http.Client{Timeout: time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	defer client.CloseIdleConnections()
	deadline := time.Now().Add(browserTimeout)
	for {
		resp, err := client.Get(url + "/")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return url, accessLog
			}
		}
		select {
		case <-exited:
			t.Fatalf("nginx exited: %s", mustRead(t, filepath.Join(dir, "error.log")))
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("nginx did not serve the page within %v: %v", browserTimeout, err)
		}
	}
}

// waitLog waits until nginx's access log has a line that is want
// ("502 GET /v1/stream").
func waitLog(t *testing.T, file, want string) {
	t.Helper()
	deadline := time.Now().Add(browserTimeout)
	for {
		f, err := os.Open(file)
		if err == nil {
			sc := bufio.NewScanner(f)
			for sc.Scan() {
				if sc.Text() == want {
					f.Close()
					return
				}
			}
			f.Close()
		}
		if time.Now().After(deadline) {
			t.Fatalf("nginx logged no %q within %v", want, browserTimeout)
		}
		time.Sleep(20 * time.Millisecond) // polling a file, not guessing a delay
	}
}

func TestBrowserNginx(t *testing.T) {
	port, err := storetest.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	env := map[string]string{
		"HERALD_ADDR":     fmt.Sprintf("127.0.0.1:%d", port),
		"HERALD_DATA_DIR": t.TempDir(),
		"HERALD_DEV":      "on",
	}
	herald := startProc(t, env)
	url, accessLog := startNginx(t, strings.TrimPrefix(herald.URL, "http://"))

	alice := openChat(person(t, "alice"), url, "", "Alice")
	room := alice.createRoom("through nginx")
	var proto string
	alice.eval(`performance.getEntriesByType("navigation")[0].nextHopProtocol`, &proto)
	if proto != "h2" {
		t.Errorf("the page came over %q; want h2", proto)
	}

	bob, err := api.Mint([]byte(testSecret), "bob", "Bob", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	direct := &testServer{t: t, URL: herald.URL}
	direct.must(http.StatusOK, "POST", "/v1/rooms/"+room+"/join", bob, nil, nil)
	direct.post(bob, room, "before")
	alice.waitTexts("the first message", "before")
	alice.eval(`(window.sameDocument = true, null)`, nil)

	// Herald stops: the stream gets its closing frame, EventSource
	// reconnects into nginx's 502 and gives up; the client keeps asking
	// for tickets, and gets 502s too.
	herald.stop()
	waitLog(t, accessLog, "502 GET /v1/stream")
	waitLog(t, accessLog, "502 POST /v1/stream/tickets")
	alice.waitJS("the page to say so", `document.querySelector("#conn").dataset.state === "reconnecting"`)

	herald = startProc(t, env)
	direct.URL = herald.URL
	want := []string{"before"}
	for i := range 5 {
		text := fmt.Sprintf("back %d", i)
		direct.post(bob, room, text)
		want = append(want, text)
	}
	alice.waitTexts("every message once, in order", want...)
	alice.waitJS("live, in the same document", `document.querySelector("#conn").dataset.state === "live" && window.sameDocument === true`)
}
