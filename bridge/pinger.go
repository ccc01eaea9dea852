package bridge

import (
	"context"
	"time"
)

// runPinger pings every socket once per PingInterval, one phase at a time,
// and terminates sockets that have not answered for PongTimeout, as
// superset-websocket's checkSockets does.
func (s *Server) runPinger(ctx context.Context) error {
	tick := time.NewTicker(max(s.cfg.PingInterval/pingPhases, time.Millisecond))
	defer tick.Stop()
	timeout := s.cfg.PongTimeout.Nanoseconds()
	for phase := 0; ; phase = (phase + 1) % pingPhases {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		now := time.Now().UnixNano()
		for _, c := range s.registry.phase(phase) {
			if now-c.lastPong.Load() >= timeout {
				c.logger().Info("terminating socket that stopped answering pings", "timeout", s.cfg.PongTimeout)
				c.terminate(reasonNoPong)
				continue
			}
			c.sendControl(pingFrame)
		}
	}
}
