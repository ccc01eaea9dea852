// Package embedded runs a NATS server with JetStream inside the pushbridge
// process.
//
// It is the default deployment: one binary, nothing else to install. The
// gateway connects to it through an in-process pipe ([Server.InProcessConn],
// used by nats.InProcessServer), so no TCP listener is opened unless the
// configuration asks for one (other publishers, or a cluster, need it).
//
// A Server is created with [New], started with [Server.Start] and stopped
// with [Server.Shutdown], which uses lame-duck mode so that JetStream
// leadership moves before the node leaves. All methods are safe for
// concurrent use; Shutdown may be called more than once.
package embedded
