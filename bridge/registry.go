package bridge

import "sync"

// pingPhases splits the sockets into groups pinged at different moments of
// the ping interval, so that a node with many sockets does not write all
// its pings in one burst.
const pingPhases = 16

// registry holds every open socket of the node, grouped by ping phase.
type registry struct {
	phases [pingPhases]connSet
}

type connSet struct {
	mu    sync.Mutex
	conns map[*conn]struct{}
}

func (r *registry) init() {
	for i := range r.phases {
		r.phases[i].conns = make(map[*conn]struct{})
	}
}

func (r *registry) add(c *conn) {
	p := &r.phases[c.id%pingPhases]
	p.mu.Lock()
	p.conns[c] = struct{}{}
	p.mu.Unlock()
}

func (r *registry) remove(c *conn) {
	p := &r.phases[c.id%pingPhases]
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
}

// phase returns a snapshot of one phase's sockets.
func (r *registry) phase(i int) []*conn {
	p := &r.phases[i]
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]*conn, 0, len(p.conns))
	for c := range p.conns {
		out = append(out, c)
	}
	return out
}

// all returns a snapshot of every socket.
func (r *registry) all() []*conn {
	var out []*conn
	for i := range r.phases {
		out = append(out, r.phase(i)...)
	}
	return out
}
