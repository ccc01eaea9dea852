package bridge

import (
	"fmt"
	"testing"
	"time"
)

func TestLiveDelivery(t *testing.T) {
	g := startGateway(t, gatewayOptions{})
	c := g.dial("chan-a", "")
	other := g.dial("chan-b", "")
	seq := g.publish("chan-a", `{"channel_id": "chan-a", "job_id": "j1", "user_id": 1, "status": "done", "errors": [], "result_url": "/api/v1/chart/data/qc-1"}`)
	got := string(c.next(5 * time.Second))
	want := fmt.Sprintf(`{"id":"%d-%d","channel_id":"chan-a","job_id":"j1","user_id":1,"status":"done","errors":[],"result_url":"/api/v1/chart/data/qc-1"}`, g.log.Epoch(), seq)
	if got != want {
		t.Fatalf("frame\n got %s\nwant %s", got, want)
	}
	other.expectNothing(50 * time.Millisecond)
}

// TestNoGapAtConnect: an event dispatched while the handshake is in flight
// reaches the new socket, although it has no last_id: the socket is
// registered before the 101 response.
func TestNoGapAtConnect(t *testing.T) {
	g := startGateway(t, gatewayOptions{})
	var seq uint64
	g.srv.beforeHandshake = func() {
		seq = g.publish("gap", `{"during":"handshake"}`)
		for g.srv.hub.cursor.Load() < seq {
			<-g.srv.cursorSig.wait()
		}
	}
	c := g.dial("gap", "")
	if id := frameID(t, c.next(5*time.Second)); id != g.log.ID(seq).String() {
		t.Fatalf("got %s, want the event dispatched during the handshake %s", id, g.log.ID(seq))
	}
}
