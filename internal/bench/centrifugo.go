package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Targets of a run: the protocol bench speaks to the server under test.
const (
	TargetHerald = "herald"
	// TargetCentrifugo is a Centrifugo v6 server, to compare with: the
	// streams read its unidirectional SSE endpoint, subscribed to their
	// room's channel by their connect token's channels claim, and the
	// publishers post through its HTTP server API. A room is the channel
	// CentrifugoNamespace:PREFIX-rN, and nothing is set up in advance.
	TargetCentrifugo = "centrifugo"
)

// CentrifugoNamespace is the channel namespace of the rooms on a
// Centrifugo target; its configuration must declare it.
const CentrifugoNamespace = "room"

// centrifugoChannel is the channel of room r.
func centrifugoChannel(prefix string, r int) string {
	return fmt.Sprintf("%s:%s-r%d", CentrifugoNamespace, prefix, r)
}

// centrifugoToken mints a connect token for user that subscribes its
// connection to channel as it connects, signed with the server's
// client.token.hmac_secret_key.
func centrifugoToken(secret []byte, user, channel string, ttl time.Duration) (string, error) {
	return jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
		"sub":      user,
		"exp":      time.Now().Add(ttl).Unix(),
		"channels": []string{channel},
	}).SignedString(secret)
}

// centrifugoStreamRequest is the GET of a uni-SSE connection: the connect
// command travels in the cf_connect query parameter.
func centrifugoStreamRequest(ctx context.Context, base, token string) (*http.Request, error) {
	connect, err := json.Marshal(map[string]string{"token": token})
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, "GET", base+"/connection/uni_sse?cf_connect="+url.QueryEscape(string(connect)), nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "text/event-stream")
	return req, nil
}

// Kinds of uni-SSE pushes, as bench counts them.
const (
	pushOther       = iota // a ping ({}), or anything else without a channel
	pushConnect            // the connect reply: the stream is subscribed
	pushPublication        // a message in the channel
	pushChannel            // another push about the channel (join, leave)
)

// centrifugoPush tells what a uni-SSE data line carries. Bench payloads
// need no full decoding: the keys say it.
func centrifugoPush(data []byte) int {
	switch {
	case bytes.HasPrefix(data, []byte(`{"connect":`)):
		return pushConnect
	case bytes.Contains(data, []byte(`"pub":`)):
		return pushPublication
	case bytes.HasPrefix(data, []byte(`{"channel":`)):
		return pushChannel
	}
	return pushOther
}

// centrifugoPublish posts text to channel through the server API and
// returns "" when it was published, or the kind of error. The API answers
// 200 with an error object when it refuses a command.
func (b *runner) centrifugoPublish(ctx context.Context, base, channel string, text []byte) string {
	body := make([]byte, 0, len(text)+len(channel)+40)
	body = append(body, `{"channel":`...)
	body = strconv.AppendQuote(body, channel)
	body = append(body, `,"data":{"text":"`...)
	body = append(body, text...)
	body = append(body, `"}}`...)
	req, err := http.NewRequestWithContext(ctx, "POST", base+"/api/publish", bytes.NewReader(body))
	if err != nil {
		return "post_error"
	}
	req.Header.Set("X-API-Key", b.o.APIKey)
	req.Header.Set("Content-Type", "application/json")
	resp, err := b.postClient.Do(req)
	if err != nil {
		return "post_" + netErrorKind(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode == http.StatusOK && !bytes.Contains(data, []byte(`"error"`)) {
		return ""
	}
	if resp.StatusCode == http.StatusUnauthorized || (resp.StatusCode == http.StatusOK && len(data) > 0) {
		b.fail(fmt.Errorf("centrifugo publish: %d %.200s (check --api-key and the %q namespace)", resp.StatusCode, data, CentrifugoNamespace))
	}
	return "post_" + strconv.Itoa(resp.StatusCode)
}
