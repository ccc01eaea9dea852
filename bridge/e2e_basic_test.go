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
