package bridge

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/gorilla/websocket"

	"github.com/pushbridge/pushbridge/bridge/eventlog"
)

var goldenID = eventlog.ID{Epoch: 1795388654, Seq: 42}

// TestEventFramesGolden checks frame bodies byte for byte against golden
// files. The golden files were checked against Node: they equal
// JSON.stringify({id, ...JSON.parse(payload)}) with the payload's own "id"
// removed, i.e. what superset-websocket sends.
func TestEventFramesGolden(t *testing.T) {
	inputs, err := filepath.Glob("testdata/frames/*.json")
	if err != nil || len(inputs) == 0 {
		t.Fatalf("no golden inputs: %v", err)
	}
	for _, in := range inputs {
		name := strings.TrimSuffix(filepath.Base(in), ".json")
		t.Run(name, func(t *testing.T) {
			payload := mustRead(t, in)
			want := mustRead(t, strings.TrimSuffix(in, ".json")+".golden")
			ev, body, err := encodeEvent(goldenID, payload)
			if err != nil {
				t.Fatalf("encode: %v", err)
			}
			if !bytes.Equal(body, want) {
				t.Fatalf("body\n got %s\nwant %s", body, want)
			}
			if ev.seq != goldenID.Seq {
				t.Fatalf("seq %d, want %d", ev.seq, goldenID.Seq)
			}
			if !bytes.Equal(ev.frame, preparedFrame(t, want)) {
				t.Fatalf("frame differs from websocket.PreparedMessage's:\n got %x\nwant %x", ev.frame, preparedFrame(t, want))
			}
		})
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// preparedFrame returns the bytes gorilla's PreparedMessage puts on the
// wire for a server text message, read raw from a loopback connection.
func preparedFrame(t *testing.T, body []byte) []byte {
	t.Helper()
	pm, err := websocket.NewPreparedMessage(websocket.TextMessage, body)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ws, err := (&websocket.Upgrader{}).Upgrade(w, r, nil)
		if err != nil {
			return
		}
		_ = ws.WritePreparedMessage(pm)
		_, _, _ = ws.ReadMessage() // hold the connection until the client leaves
	}))
	defer srv.Close()
	conn, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprintf(conn, "GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("handshake: %v %v", resp, err)
	}
	want := len(appendFrameHeader(nil, opText, len(body))) + len(body)
	frame := make([]byte, want)
	if _, err := io.ReadFull(br, frame); err != nil {
		t.Fatal(err)
	}
	return frame
}

func TestControlFrames(t *testing.T) {
	if got := closeFrame(1001, "bye"); !bytes.Equal(got, []byte{0x88, 5, 0x03, 0xE9, 'b', 'y', 'e'}) {
		t.Fatalf("close frame %x", got)
	}
	long := strings.Repeat("é", 100) // 200 bytes, cut on a rune boundary
	f := closeFrame(1000, long)
	if len(f) > 2+125 || !utf8.Valid(f[4:]) {
		t.Fatalf("close frame not cut to a valid control frame: len %d", len(f))
	}
	if !bytes.Equal(pingFrame, []byte{0x89, 0}) {
		t.Fatalf("ping frame %x", pingFrame)
	}
	for _, n := range []int{0, 125, 126, 65535, 65536} {
		h := appendFrameHeader(nil, opText, n)
		want := map[int]int{0: 2, 125: 2, 126: 4, 65535: 4, 65536: 10}[n]
		if len(h) != want {
			t.Errorf("header for %d bytes is %d bytes, want %d", n, len(h), want)
		}
	}
}

func TestEncodeEventRejects(t *testing.T) {
	for name, payload := range map[string]string{
		"array":       `[1,2]`,
		"string":      `"x"`,
		"truncated":   `{"a":`,
		"trailing":    `{"a":1} x`,
		"bad escape":  `{"a":"\q"}`,
		"raw control": "{\"a\":\"\x01\"}",
		"empty":       ``,
		"bad number":  `{"a":01}`,
		"deep":        strings.Repeat("[", 300) + strings.Repeat("]", 300),
	} {
		if _, _, err := encodeEvent(goldenID, []byte(payload)); err == nil {
			t.Errorf("%s: accepted %q", name, payload)
		}
	}
	deep := `{"a":` + strings.Repeat("[", 300) + strings.Repeat("]", 300) + `}`
	if _, _, err := encodeEvent(goldenID, []byte(deep)); err == nil {
		t.Error("accepted nesting deeper than the limit")
	}
}

func TestInvalidUTF8BecomesReplacement(t *testing.T) {
	_, body, err := encodeEvent(goldenID, []byte("{\"a\":\"x\xffy\"}"))
	if err != nil {
		t.Fatal(err)
	}
	if !utf8.Valid(body) || !bytes.Contains(body, []byte("x\uFFFDy")) {
		t.Fatalf("body %q", body)
	}
}

// FuzzEventBody checks the re-encoder against encoding/json: whatever it
// accepts is valid JSON and valid UTF-8, means the same as the payload
// (minus "id"), and re-encodes to itself.
func FuzzEventBody(f *testing.F) {
	inputs, _ := filepath.Glob("testdata/frames/*.json")
	for _, in := range inputs {
		b, _ := os.ReadFile(in)
		f.Add(b)
	}
	f.Add([]byte(`{"a":[1,2,{"b":null}],"c":"\u00e9\ud83d\ude00","d":-1.5e-10}`))
	f.Add([]byte(`{"id":1,"x":true}`))
	f.Add([]byte(`{"a":` + strings.Repeat("[", maxJSONDepth) + strings.Repeat("]", maxJSONDepth) + `}`))
	f.Fuzz(func(t *testing.T, payload []byte) {
		_, body, err := encodeEvent(goldenID, payload)
		var ref map[string]any
		refErr := json.Unmarshal(payload, &ref)
		// The publish API's check accepts exactly what can be framed.
		if verr := eventlog.ValidatePayload(payload, 0); verr == nil && err != nil {
			t.Fatalf("ValidatePayload accepts %q, which the encoder rejects: %v", payload, err)
		} else if verr != nil && err == nil && utf8.Valid(payload) {
			t.Fatalf("ValidatePayload rejects %q, which the encoder frames: %v", payload, verr)
		}
		if err != nil {
			if refErr == nil && ref != nil && !strings.Contains(err.Error(), "deeply") {
				t.Fatalf("rejected %q that encoding/json accepts: %v", payload, err)
			}
			return
		}
		if !utf8.Valid(body) {
			t.Fatalf("body is not UTF-8: %q", body)
		}
		var got map[string]any
		if err := json.Unmarshal(body, &got); err != nil {
			t.Fatalf("body is not JSON: %q: %v", body, err)
		}
		if got["id"] != goldenID.String() {
			t.Fatalf("id %v", got["id"])
		}
		var rangeErr *json.UnmarshalTypeError
		if errors.As(refErr, &rangeErr) && strings.HasPrefix(rangeErr.Value, "number") {
			return // a number beyond float64: JavaScript makes it null, Go refuses it
		}
		if refErr != nil {
			// Anything else encoding/json rejects, we must reject too.
			t.Fatalf("accepted %q that encoding/json rejects: %v", payload, refErr)
		}
		delete(got, "id")
		delete(ref, "id")
		normalizeZero(got)
		normalizeZero(ref)
		gb, _ := json.Marshal(got)
		rb, _ := json.Marshal(ref)
		if !bytes.Equal(gb, rb) {
			t.Fatalf("meaning changed:\n got %s\nwant %s", gb, rb)
		}
		// Idempotent: encoding the body again (its id dropped) gives it.
		_, again, err := encodeEvent(goldenID, body)
		if err != nil || !bytes.Equal(again, body) {
			t.Fatalf("not idempotent: %q -> %q (%v)", body, again, err)
		}
	})
}

// normalizeZero replaces -0 by 0: JavaScript prints both as 0.
func normalizeZero(v any) any {
	switch x := v.(type) {
	case float64:
		if x == 0 {
			return 0.0
		}
	case map[string]any:
		for k, e := range x {
			x[k] = normalizeZero(e)
		}
	case []any:
		for i, e := range x {
			x[i] = normalizeZero(e)
		}
	}
	return v
}
