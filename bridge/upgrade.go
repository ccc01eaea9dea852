package bridge

import (
	"net"
	"net/http"
	"syscall"
	"time"
)

// serveUpgrade authenticates and upgrades a WebSocket request on any path,
// as superset-websocket does, then joins the socket to its channel.
func (s *Server) serveUpgrade(w http.ResponseWriter, r *http.Request) {
	started := time.Now()
	s.handlers.Add(1)
	defer s.handlers.Done()
	if s.draining.Load() {
		s.refuse(w, r, refuse(reasonShuttingDown, "the gateway is shutting down"))
		return
	}
	if ok, why := s.Ready(); !ok {
		s.refuse(w, r, refuse(reasonNotReady, "the gateway is not ready: %s", why))
		return
	}
	if ref := s.origins.check(r); ref != nil {
		s.refuse(w, r, ref)
		return
	}
	channel, ref := s.auth.channel(r)
	if ref != nil {
		s.refuse(w, r, ref)
		return
	}
	rp := parseLastID(r.URL.Query().Get("last_id"), s.epoch)

	// Register before the handshake completes: from the moment the client
	// sees 101, every event of its channel reaches its socket (held until
	// the socket joins). Count first, so that concurrent upgrades cannot
	// overshoot the cap. register also lists the socket (pings, shutdown)
	// and counts it in pushbridge_connections; nothing is written to it
	// before attach.
	c := newConn(s, s.nextID.Add(1), channel, r.RemoteAddr)
	var plan joinPlan
	limit := ""
	if n := s.hub.connections.Add(1); s.cfg.MaxTotalConnections > 0 && n > int64(s.cfg.MaxTotalConnections) {
		limit = "limit_total"
	} else if p, ok := s.register(c, rp); !ok {
		limit = "limit_channel"
	} else {
		plan = p
	}
	if limit != "" {
		s.hub.connections.Add(-1)
	}
	if s.beforeHandshake != nil {
		s.beforeHandshake()
	}
	ws, err := s.upgrader.Upgrade(w, r, nil)
	if err != nil {
		if limit == "" {
			s.dropUnattached(c)
		}
		return // handshakeError answered and counted it
	}
	nc := ws.NetConn()
	_ = nc.SetDeadline(time.Time{})
	if tcp, ok := nc.(*net.TCPConn); ok && s.cfg.SendBufferBytes > 0 {
		_ = tcp.SetWriteBuffer(s.cfg.SendBufferBytes)
	}
	if !c.attach(nc, s.rawConn(nc)) {
		_ = nc.Close() // closed while the handshake ran (terminate unregistered it)
		return
	}
	// A ping or a shutdown's close frame may have been queued meanwhile.
	c.flush()
	log := c.logger()
	switch limit {
	case "limit_total":
		s.rejectConn(c, limit, "maximum total connections reached")
		return
	case "limit_channel":
		s.rejectConn(c, limit, "maximum connections for this channel reached")
		return
	}
	s.metrics.accepted.Inc()
	s.metrics.incr(statsdConnected)
	s.startReading(c)

	switch rp.kind {
	case resumeUnusable:
		s.metrics.lastIDInvalid.WithLabelValues(rp.why).Inc()
		log.Warn("ignoring unusable last_id; delivering live events only", "last_id", rp.raw, "why", rp.why)
	case resumeEpochReset:
		s.metrics.lastIDInvalid.WithLabelValues("epoch_reset").Inc()
		log.Warn("last_id is from an earlier stream epoch: events after it in the old stream are lost; replaying all the channel has now",
			"last_id", rp.raw, "epoch", s.epoch)
	}
	log.Debug("socket connected", "last_id", rp.raw, "resume", rp.kind.String())
	s.replay(s.lifetime, c, rp, plan, started)
}

// rawConn returns the socket's raw connection when the poller can drive it.
func (s *Server) rawConn(nc net.Conn) syscall.RawConn {
	if s.epoll == nil {
		return nil
	}
	tcp, ok := nc.(*net.TCPConn)
	if !ok {
		return nil
	}
	raw, err := tcp.SyscallConn()
	if err != nil {
		return nil
	}
	return raw
}

// startReading hands the socket to the poller, or to a reader goroutine.
func (s *Server) startReading(c *conn) {
	if c.raw != nil {
		if err := s.epoll.add(c); err == nil {
			return
		} else {
			c.logger().Warn("cannot poll socket, using a reader goroutine", "err", err)
		}
	}
	s.writers.Add(1)
	go func() {
		defer s.writers.Done()
		c.readLoop()
	}()
}

// rejectConn completes the handshake and closes with 1013, as
// superset-websocket does when a connection limit is reached.
func (s *Server) rejectConn(c *conn, limit, text string) {
	s.metrics.connRejected.WithLabelValues(limit).Inc()
	s.metrics.incr(statsdConnectionRejected)
	c.logger().Warn("connection limit reached, closing with 1013", "limit", limit,
		"max_total", s.cfg.MaxTotalConnections, "max_per_channel", s.cfg.MaxConnectionsPerChannel)
	c.mu.Lock()
	c.queue = append(c.queue, closeFrame(closeTryAgain, text))
	c.state = stateClosing
	c.closeQueued = true
	c.closeReason = reasonLimit
	c.mu.Unlock()
	if c.raw == nil {
		// No poller: a reader goroutine sees the client's close reply.
		s.startReading(c)
	} else if err := s.epoll.add(c); err != nil {
		s.startReading(c)
	}
	c.flush()
}

// refuse answers a refused upgrade with a status and logs the exact reason.
func (s *Server) refuse(w http.ResponseWriter, r *http.Request, ref *refusal) {
	s.metrics.upgradesRejected.WithLabelValues(ref.reason).Inc()
	s.metrics.incr(statsdUpgradeRejected)
	s.log.Warn("upgrade refused", "reason", ref.reason, "detail", ref.detail, "status", ref.status(),
		"remote", r.RemoteAddr, "path", r.URL.Path)
	http.Error(w, ref.reason+": "+ref.detail, ref.status())
}

// handshakeError answers a request that claims to be an upgrade but is not
// a valid WebSocket handshake.
func (s *Server) handshakeError(w http.ResponseWriter, r *http.Request, status int, reason error) {
	s.metrics.upgradesRejected.WithLabelValues(reasonBadHandshake).Inc()
	s.metrics.incr(statsdUpgradeRejected)
	s.log.Warn("upgrade refused", "reason", reasonBadHandshake, "detail", reason.Error(), "status", status,
		"remote", r.RemoteAddr, "path", r.URL.Path)
	http.Error(w, reasonBadHandshake+": "+reason.Error(), status)
}

// dropUnattached forgets a registered socket whose handshake failed.
func (s *Server) dropUnattached(c *conn) {
	c.mu.Lock()
	c.state = stateClosed
	c.joinBuf = nil
	c.mu.Unlock()
	s.forget(c)
}

// unregister forgets a closed socket.
func (s *Server) unregister(c *conn, reason string) {
	if !s.forget(c) {
		return // refused at registration, or already forgotten
	}
	s.metrics.disconnects.WithLabelValues(reason).Inc()
	c.logger().Debug("socket closed", "reason", reason)
}

// forget takes a socket off its channel and undoes what register counted.
// Only the call that removes it from its channel does so, and it reports
// true.
func (s *Server) forget(c *conn) bool {
	sh := s.hub.shardOf(c.channel)
	sh.mu.Lock()
	removed := s.hub.removeConnLocked(sh, c)
	sh.mu.Unlock()
	if !removed {
		return false
	}
	s.registry.remove(c)
	s.hub.connections.Add(-1)
	s.metrics.connections.Dec()
	return true
}
