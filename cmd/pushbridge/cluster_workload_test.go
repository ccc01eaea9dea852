//go:build linux

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/pushbridge/pushbridge/bridge"
)

// The workload of the process-level tests: browser-style clients that
// follow one channel each across the cluster like a browser behind a round
// robin proxy without sticky sessions, and a publisher that numbers each
// channel's events 1, 2, 3, … and retries a failed publish with the same
// idempotency key until it is stored.

// pushFrame is one event frame as a client received it.
type pushFrame struct {
	n     int
	epoch uint64
	seq   uint64
	node  int
	at    time.Time
}

// id is the frame's event id, as sent back in ?last_id=.
func (f pushFrame) id() string { return fmt.Sprintf("%d-%d", f.epoch, f.seq) }

// parsePushFrame reads {"id":"<epoch>-<seq>","n":<n>} (the gateway writes
// the id first, then the payload's members in order).
func parsePushFrame(b []byte) (epoch, seq uint64, n int, err error) {
	const idKey, nKey = `{"id":"`, `,"n":`
	if !bytes.HasPrefix(b, []byte(idKey)) {
		return 0, 0, 0, fmt.Errorf("frame without a leading id: %s", b)
	}
	rest := b[len(idKey):]
	end := bytes.IndexByte(rest, '"')
	if end < 0 {
		return 0, 0, 0, fmt.Errorf("unterminated id: %s", b)
	}
	e, s, ok := strings.Cut(string(rest[:end]), "-")
	if !ok {
		return 0, 0, 0, fmt.Errorf("id without '-': %s", b)
	}
	if epoch, err = strconv.ParseUint(e, 10, 64); err != nil {
		return 0, 0, 0, fmt.Errorf("id epoch: %w", err)
	}
	if seq, err = strconv.ParseUint(s, 10, 64); err != nil {
		return 0, 0, 0, fmt.Errorf("id sequence: %w", err)
	}
	rest = rest[end+1:]
	if !bytes.HasPrefix(rest, []byte(nKey)) {
		return 0, 0, 0, fmt.Errorf("frame without n after the id: %s", b)
	}
	rest = rest[len(nKey):]
	end = bytes.IndexAny(rest, ",}")
	if end < 0 {
		return 0, 0, 0, fmt.Errorf("unterminated n: %s", b)
	}
	if n, err = strconv.Atoi(string(rest[:end])); err != nil {
		return 0, 0, 0, fmt.Errorf("n: %w", err)
	}
	return epoch, seq, n, nil
}

// clientDial is one successful connection of a client.
type clientDial struct {
	node     int
	at       time.Time
	lastID   string
	frames   int // frames received before this dial
	attempts int // failed attempts before this one
}

// clientDrop is the end of one connection.
type clientDrop struct {
	node int
	at   time.Time
	code int // close code received, or -1 when the connection just broke
	hop  bool
	err  string
}

// clusterClient is one browser tab: a socket on one channel, resumed with
// ?last_id=<id of the last frame received> on another node whenever it
// breaks.
type clusterClient struct {
	index   int
	channel string
	nodes   []*gatewayNode
	token   string
	dialer  *websocket.Dialer

	// record keeps every frame (the fault tests); the storm keeps counts.
	record bool
	// owedFrom is the first event the client must receive (0: any, the
	// first frame a fresh client gets).
	owedFrom int

	mu          sync.Mutex
	ws          *websocket.Conn
	node        int
	hopTo       int
	resumeID    string
	frames      []pushFrame
	dials       []clientDial
	drops       []clientDrop
	failedDials int
	// Running check for unrecorded clients: first problem seen.
	firstN, prevN int
	prevSeq       uint64
	epoch         uint64
	received      int
	problem       string

	lastN     atomic.Int64
	connected chan struct{}
	// reached is closed when lastN first reaches target (when target > 0).
	target    int
	reached   chan struct{}
	reachedAt time.Time
}

// newClusterClient prepares a client of channel; resumeID, when set, is the
// last_id of its first connection.
func newClusterClient(t *testing.T, index int, channel string, nodes []*gatewayNode, resumeID string, record bool) *clusterClient {
	t.Helper()
	tok, err := mintToken(testSecret, channel, nil, time.Hour, "channel", "publish")
	if err != nil {
		t.Fatal(err)
	}
	return &clusterClient{
		index: index, channel: channel, nodes: nodes, token: tok, record: record,
		dialer:   &websocket.Dialer{HandshakeTimeout: 10 * time.Second},
		hopTo:    -1,
		resumeID: resumeID,
		// A resumed client is owed everything after its last_id.
		prevN:     -1,
		connected: make(chan struct{}),
		reached:   make(chan struct{}),
	}
}

// run follows the channel until ctx ends, starting on node start.
func (c *clusterClient) run(ctx context.Context, start int) {
	next := start
	for ctx.Err() == nil {
		ws, node, ok := c.dial(ctx, next)
		if !ok {
			return
		}
		c.read(ctx, ws, node)
		c.mu.Lock()
		if c.hopTo >= 0 {
			next, c.hopTo = c.hopTo, -1
		} else {
			next = (node + 1) % len(c.nodes)
		}
		c.mu.Unlock()
	}
}

// dial connects to node first, then to the others in turn (a proxy
// without sticky sessions), with the id of the last frame received.
func (c *clusterClient) dial(ctx context.Context, first int) (*websocket.Conn, int, bool) {
	header := http.Header{"Cookie": {"async-token=" + c.token}}
	node := first
	for attempt := 0; ; attempt++ {
		c.mu.Lock()
		lastID := c.resumeID
		c.mu.Unlock()
		ws, resp, err := c.dialer.DialContext(ctx, c.nodes[node].WSURL(lastID), header)
		if resp != nil && resp.Body != nil {
			_ = resp.Body.Close()
		}
		if err == nil {
			c.mu.Lock()
			c.ws, c.node = ws, node
			c.dials = append(c.dials, clientDial{node: node, at: time.Now(), lastID: lastID, frames: c.received, attempts: attempt})
			isFirst := len(c.dials) == 1
			c.mu.Unlock()
			if isFirst {
				close(c.connected)
			}
			return ws, node, true
		}
		c.mu.Lock()
		c.failedDials++
		c.mu.Unlock()
		node = (node + 1) % len(c.nodes)
		pause := 10 * time.Millisecond
		if node == first {
			pause = 100*time.Millisecond + rand.N(50*time.Millisecond)
		}
		select {
		case <-ctx.Done():
			return nil, 0, false
		case <-time.After(pause):
		}
	}
}

// read consumes frames until the socket ends.
func (c *clusterClient) read(ctx context.Context, ws *websocket.Conn, node int) {
	stop := context.AfterFunc(ctx, func() { _ = ws.Close() })
	defer stop()
	defer ws.Close()
	for {
		_, b, err := ws.ReadMessage()
		if err != nil {
			drop := clientDrop{node: node, at: time.Now(), code: -1, err: err.Error()}
			var ce *websocket.CloseError
			if errors.As(err, &ce) {
				drop.code = ce.Code
			}
			c.mu.Lock()
			drop.hop = c.hopTo >= 0
			c.drops = append(c.drops, drop)
			c.ws = nil
			c.mu.Unlock()
			return
		}
		now := time.Now()
		epoch, seq, n, perr := parsePushFrame(b)
		c.mu.Lock()
		if perr != nil {
			if c.problem == "" {
				c.problem = perr.Error()
			}
			c.mu.Unlock()
			continue
		}
		c.check(epoch, seq, n)
		c.received++
		c.resumeID = fmt.Sprintf("%d-%d", epoch, seq)
		if c.record {
			c.frames = append(c.frames, pushFrame{n: n, epoch: epoch, seq: seq, node: node, at: now})
		}
		c.lastN.Store(int64(n))
		if c.target > 0 && n >= c.target && c.reachedAt.IsZero() {
			c.reachedAt = now
			close(c.reached)
		}
		c.mu.Unlock()
	}
}

// check verifies the stream as it arrives (c.mu held): one epoch, rising
// sequences, and n rising by exactly one from the first frame (or from the
// client's resume point).
func (c *clusterClient) check(epoch, seq uint64, n int) {
	if c.problem != "" {
		return
	}
	switch {
	case c.received == 0 && c.prevN < 0:
		c.firstN = n
	case c.epoch != 0 && epoch != c.epoch:
		c.problem = fmt.Sprintf("epoch changed from %d to %d at n=%d", c.epoch, epoch, n)
	case seq <= c.prevSeq:
		c.problem = fmt.Sprintf("sequence %d after %d (n=%d after n=%d): duplicate or reordered", seq, c.prevSeq, n, c.prevN)
	case n != c.prevN+1:
		c.problem = fmt.Sprintf("n=%d after n=%d (seq %d after %d): %s", n, c.prevN, seq, c.prevSeq, gapKind(c.prevN, n))
	}
	c.epoch, c.prevSeq, c.prevN = epoch, seq, n
}

func gapKind(prev, n int) string {
	switch {
	case n <= prev:
		return "duplicate or reordered"
	default:
		return fmt.Sprintf("%d lost", n-prev-1)
	}
}

// resumeAt sets the client's starting point: after event n with id, so the
// client is owed n+1 onwards.
func (c *clusterClient) resumeAt(n int, id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.resumeID, c.prevN, c.firstN, c.owedFrom = id, n, n+1, n+1
	if epoch, seq, ok := parseID(id); ok {
		c.epoch, c.prevSeq = epoch, seq
	}
}

func parseID(id string) (epoch, seq uint64, ok bool) {
	e, s, found := strings.Cut(id, "-")
	if !found {
		return 0, 0, false
	}
	epoch, err1 := strconv.ParseUint(e, 10, 64)
	seq, err2 := strconv.ParseUint(s, 10, 64)
	return epoch, seq, err1 == nil && err2 == nil
}

// hop closes the client's socket so that it resumes on node: a browser
// whose proxy picks another gateway on its next connection.
func (c *clusterClient) hop(node int) {
	c.mu.Lock()
	c.hopTo = node
	ws := c.ws
	c.mu.Unlock()
	if ws != nil {
		_ = ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, "moving"), time.Now().Add(time.Second))
		_ = ws.Close()
	}
}

// currentNode returns the node of the open socket, or -1.
func (c *clusterClient) currentNode() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ws == nil {
		return -1
	}
	return c.node
}

// verify checks the whole history of a client that recorded its frames:
// the running check found nothing, the frames are exactly n = first…final
// of the channel (first = owedFrom when set) with the sequences the
// publisher was acknowledged, and every reconnection resumed from the id
// of the last frame received before it.
func (c *clusterClient) verify(final int, published []pubEvent) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.problem != "" {
		return errors.New(c.problem)
	}
	if c.record {
		if len(c.frames) == 0 {
			return errors.New("no frame received")
		}
		if c.owedFrom > 0 && c.frames[0].n != c.owedFrom {
			return fmt.Errorf("first frame n=%d, want %d", c.frames[0].n, c.owedFrom)
		}
		for i, f := range c.frames {
			if want := c.frames[0].n + i; f.n != want {
				return fmt.Errorf("frame %d is n=%d, want %d", i, f.n, want)
			}
			if f.n < 1 || f.n > len(published) {
				return fmt.Errorf("frame %d is n=%d, beyond the %d published", i, f.n, len(published))
			}
			if pub := published[f.n-1]; pub.seq != f.seq {
				return fmt.Errorf("n=%d arrived as sequence %d, the publisher was acknowledged %d", f.n, f.seq, pub.seq)
			}
		}
		for k, d := range c.dials[1:] {
			if d.frames == 0 {
				continue
			}
			if want := c.frames[d.frames-1].id(); d.lastID != want {
				return fmt.Errorf("reconnection %d used last_id %q, the last frame before it was %s", k+1, d.lastID, want)
			}
		}
	}
	if got := int(c.lastN.Load()); got != final {
		return fmt.Errorf("last frame n=%d, the channel's last event is n=%d", got, final)
	}
	return nil
}

// frameAt returns when the client received event n, if it did (clients
// that record).
func (c *clusterClient) frameAt(n int) (time.Time, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.frames) == 0 {
		return time.Time{}, false
	}
	i := n - c.frames[0].n
	if i < 0 || i >= len(c.frames) || c.frames[i].n != n {
		return time.Time{}, false
	}
	return c.frames[i].at, true
}

// pubEvent is one stored event as the publisher saw it.
type pubEvent struct {
	n         int
	seq       uint64
	id        string
	first     time.Time // first attempt
	stored    time.Time // acknowledged
	attempts  int
	duplicate bool // acknowledged as a duplicate: an earlier attempt was stored
}

// clusterPublisher publishes numbered events through the gateways' HTTP
// publish API, round robin over every node, as a publisher behind the
// proxy would. A failed attempt moves on to the next node and is retried
// with the same idempotency key until it is stored once.
type clusterPublisher struct {
	nodes []*gatewayNode
	token string
	http  *http.Client
	rr    atomic.Uint64

	mu     sync.Mutex
	events map[string][]pubEvent

	attempts, failures, duplicates atomic.Int64
	// Failed attempts by kind: connection refused (a stopped node),
	// 503 from a gateway (the event log did not store the event), other
	// (timeouts, resets).
	refused, unavailable, otherFailures atomic.Int64
	lastErr                             atomic.Value // string
}

// publishStatusError is a publish answered with an error status.
type publishStatusError struct {
	node string
	code int
	body string
}

func (e *publishStatusError) Error() string { return fmt.Sprintf("%s: %d %s", e.node, e.code, e.body) }

// failureSummary describes the failed attempts.
func (p *clusterPublisher) failureSummary() string {
	return fmt.Sprintf("%d publish attempts failed and were retried (%d refused by a stopped node, %d answered 503, %d other)",
		p.failures.Load(), p.refused.Load(), p.unavailable.Load(), p.otherFailures.Load())
}

func newClusterPublisher(t *testing.T, nodes []*gatewayNode) *clusterPublisher {
	t.Helper()
	tok, err := mintToken(testSecret, "", []string{"*"}, time.Hour, "channel", "publish")
	if err != nil {
		t.Fatal(err)
	}
	return &clusterPublisher{
		nodes: nodes, token: tok, events: map[string][]pubEvent{},
		http: &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64}},
	}
}

// publish stores event n of channel (n must be the channel's next).
func (p *clusterPublisher) publish(ctx context.Context, channel string, n int) error {
	key := fmt.Sprintf("%s-%d", channel, n)
	body := fmt.Sprintf(`{"n":%d,"channel":%q}`, n, channel)
	ev := pubEvent{n: n, first: time.Now()}
	for attempt := 1; ; attempt++ {
		node := p.nodes[int(p.rr.Add(1)%uint64(len(p.nodes)))]
		p.attempts.Add(1)
		res, err := p.post(ctx, node, channel, key, body)
		if err == nil {
			ev.seq, ev.id, ev.stored, ev.attempts, ev.duplicate = res.Seq, res.ID, time.Now(), attempt, res.Duplicate
			if res.Duplicate {
				p.duplicates.Add(1)
			}
			p.mu.Lock()
			defer p.mu.Unlock()
			if len(p.events[channel]) != n-1 {
				return fmt.Errorf("publish %s n=%d out of turn (%d stored)", channel, n, len(p.events[channel]))
			}
			p.events[channel] = append(p.events[channel], ev)
			return nil
		}
		p.failures.Add(1)
		var status *publishStatusError
		switch {
		case errors.Is(err, syscall.ECONNREFUSED):
			p.refused.Add(1)
		case errors.As(err, &status) && status.code == http.StatusServiceUnavailable:
			p.unavailable.Add(1)
		default:
			p.otherFailures.Add(1)
		}
		p.lastErr.Store(err.Error())
		if ctx.Err() != nil {
			return fmt.Errorf("publish %s n=%d: %d attempts, last: %w", channel, n, attempt, err)
		}
		pause := 5 * time.Millisecond
		if attempt%len(p.nodes) == 0 {
			pause = 50 * time.Millisecond
		}
		select {
		case <-ctx.Done():
		case <-time.After(pause):
		}
	}
}

func (p *clusterPublisher) post(ctx context.Context, node *gatewayNode, channel, key, body string) (bridge.PublishResponse, error) {
	var out bridge.PublishResponse
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, node.Base()+"/api/v1/channels/"+channel+"/events", strings.NewReader(body))
	if err != nil {
		return out, err
	}
	req.Header.Set("Authorization", "Bearer "+p.token)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Idempotency-Key", key)
	resp, err := p.http.Do(req)
	if err != nil {
		return out, fmt.Errorf("%s: %w", node.name, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusCreated && resp.StatusCode != http.StatusOK {
		return out, &publishStatusError{node: node.name, code: resp.StatusCode, body: string(bytes.TrimSpace(b))}
	}
	if err := json.Unmarshal(b, &out); err != nil || out.Seq == 0 {
		return out, fmt.Errorf("%s: bad answer %q: %v", node.name, b, err)
	}
	return out, nil
}

// run publishes on every channel, one event per interval each (none: as
// fast as acknowledged), until stop is closed or, when limit > 0, the
// channel holds limit events; the returned wait reports the first publish
// that could not be stored before ctx ended.
func (p *clusterPublisher) run(ctx context.Context, channels []string, interval time.Duration, limit int, stop <-chan struct{}) (wait func() error) {
	var wg sync.WaitGroup
	errc := make(chan error, len(channels))
	for i, ch := range channels {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Stagger the channels over the interval.
			next := time.Now().Add(interval * time.Duration(i) / time.Duration(len(channels)))
			for n := p.count(ch) + 1; limit <= 0 || n <= limit; n++ {
				select {
				case <-stop:
					return
				case <-ctx.Done():
					return
				case <-time.After(time.Until(next)):
				}
				if err := p.publish(ctx, ch, n); err != nil {
					errc <- err
					return
				}
				next = next.Add(interval)
			}
		}()
	}
	return func() error {
		wg.Wait()
		close(errc)
		return <-errc
	}
}

// count returns how many events of channel were stored.
func (p *clusterPublisher) count(channel string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.events[channel])
}

// published returns a copy of channel's stored events, index n-1.
func (p *clusterPublisher) published(channel string) []pubEvent {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]pubEvent(nil), p.events[channel]...)
}

// checkSequences verifies that every channel's events were stored in
// publishing order, once each.
func (p *clusterPublisher) checkSequences() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	seen := map[uint64]string{}
	for ch, evs := range p.events {
		for i, ev := range evs {
			if other, dup := seen[ev.seq]; dup {
				return fmt.Errorf("sequence %d acknowledged for %s n=%d and for %s", ev.seq, ch, ev.n, other)
			}
			seen[ev.seq] = fmt.Sprintf("%s n=%d", ch, ev.n)
			if i > 0 && ev.seq <= evs[i-1].seq {
				return fmt.Errorf("%s: n=%d stored at sequence %d, n=%d at %d", ch, ev.n, ev.seq, evs[i-1].n, evs[i-1].seq)
			}
		}
	}
	return nil
}

// maxLatency returns the longest time from a publish's first attempt to
// its acknowledgement among events whose first attempt was in [from, to].
func (p *clusterPublisher) maxLatency(from, to time.Time) (time.Duration, string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	var worst time.Duration
	var which string
	for ch, evs := range p.events {
		for _, ev := range evs {
			if ev.first.Before(from) || ev.first.After(to) {
				continue
			}
			if d := ev.stored.Sub(ev.first); d > worst {
				worst, which = d, fmt.Sprintf("%s n=%d after %d attempts", ch, ev.n, ev.attempts)
			}
		}
	}
	return worst, which
}

// firstAfter returns, per channel, the first event whose first publish
// attempt began at or after t, once every channel has one.
func (p *clusterPublisher) firstAfter(channels []string, t time.Time) (map[string]pubEvent, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make(map[string]pubEvent, len(channels))
	for _, ch := range channels {
		found := false
		for _, ev := range p.events[ch] {
			if !ev.first.Before(t) {
				out[ch], found = ev, true
				break
			}
		}
		if !found {
			return nil, false
		}
	}
	return out, true
}

// metricSum adds the samples of a metric whose labels contain every one of
// the given label pairs (`reason="slow_client"`).
func metricSum(samples map[string]float64, name string, labels ...string) float64 {
	var sum float64
	for key, v := range samples {
		base, rest, _ := strings.Cut(key, "{")
		if base != name {
			continue
		}
		ok := true
		for _, l := range labels {
			if !strings.Contains(rest, l) {
				ok = false
				break
			}
		}
		if ok {
			sum += v
		}
	}
	return sum
}
