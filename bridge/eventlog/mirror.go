package eventlog

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Mirror configures a regional read replica: the node reads a local mirror
// of the origin stream (Config.Stream, in another cluster of a
// super-cluster or in a hub's JetStream domain) while appends still go to
// the origin's subjects. Mirrors keep the origin's sequence numbers, so an
// id handed out in one region resumes exactly in another.
type Mirror struct {
	// Name is the local mirror stream. Default: the origin's name with
	// "_MIRROR" appended. Stream names are unique in a super-cluster.
	Name string
	// OriginDomain is the origin's JetStream domain when it is reached
	// through a leaf node connection; empty in a super-cluster.
	OriginDomain string
	// Placement puts the mirror in this region (a cluster or tags).
	Placement *jetstream.Placement
}

// openMirror ensures the local mirror exists and adopts the origin's epoch.
func (l *Log) openMirror(ctx context.Context) error {
	m := l.cfg.Mirror
	if m.Name == "" {
		m.Name = l.cfg.Stream + "_MIRROR"
	}
	originJS := l.js
	if m.OriginDomain != "" {
		var err error
		if originJS, err = NewJetStream(l.js.Conn(), m.OriginDomain); err != nil {
			return fmt.Errorf("origin domain %q: %w", m.OriginDomain, err)
		}
	}
	// A mirror that exists already carries the origin's epoch, so the node
	// can start from it while the origin's region is unreachable (a leaf
	// node cut off from its hub, a partitioned super-cluster): the origin
	// is then asked only briefly.
	stream, err := l.js.Stream(ctx, m.Name)
	if err != nil && !errors.Is(err, jetstream.ErrStreamNotFound) {
		return fmt.Errorf("look up mirror %s: %w", m.Name, err)
	}
	exists := err == nil
	octx := ctx
	if exists {
		var cancel context.CancelFunc
		octx, cancel = context.WithTimeout(ctx, originLookupTimeout)
		defer cancel()
	}
	origin, err := originJS.Stream(octx, l.cfg.Stream)
	if err != nil {
		if exists && !errors.Is(err, jetstream.ErrStreamNotFound) && ctx.Err() == nil {
			return l.adoptMirror(stream, m.Name, originJS, err)
		}
		return fmt.Errorf("look up origin stream %s: %w", l.cfg.Stream, err)
	}
	epoch, err := parseEpoch(origin.CachedInfo().Config.Metadata)
	if err != nil {
		return fmt.Errorf("origin stream %s has no pushbridge epoch (start a gateway in the origin region first): %w", l.cfg.Stream, err)
	}
	source := &jetstream.StreamSource{Name: l.cfg.Stream}
	if m.OriginDomain != "" {
		source.External = &jetstream.ExternalStream{APIPrefix: "$JS." + m.OriginDomain + ".API"}
	}
	want := jetstream.StreamConfig{
		Name:        m.Name,
		Description: "pushbridge regional mirror of " + l.cfg.Stream,
		Mirror:      source,
		Storage:     l.storage(),
		Replicas:    l.cfg.Replicas,
		Retention:   jetstream.LimitsPolicy,
		Discard:     jetstream.DiscardOld,
		MaxAge:      l.cfg.MaxAge,
		// The origin's per-channel limit, so that every region keeps the
		// same history of a channel: nats-server gives a mirror its own
		// limits and does not mirror the origin's removals.
		MaxMsgsPerSubject: l.cfg.MaxMsgsPerChannel,
		MaxMsgs:           l.cfg.MaxMsgs,
		MaxBytes:          l.cfg.MaxBytes,
		MaxMsgSize:        l.cfg.MaxMsgSize,
		// Answer direct gets addressed to the origin from this region.
		MirrorDirect: true,
		AllowDirect:  true,
		MaxConsumers: l.cfg.MaxConsumers,
		Placement:    m.Placement,
		Metadata:     map[string]string{EpochMetadataKey: strconv.FormatUint(epoch, 10)},
	}
	switch {
	case !exists:
		stream, err = l.js.CreateStream(ctx, want)
		if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
			stream, err = l.js.Stream(ctx, m.Name)
		}
		if err != nil {
			return fmt.Errorf("create mirror %s: %w", m.Name, err)
		}
		l.log.Info("event log mirror created", "mirror", m.Name, "origin", l.cfg.Stream, "epoch", epoch)
	default:
		have := stream.CachedInfo().Config
		if have.Mirror == nil || have.Mirror.Name != l.cfg.Stream {
			return fmt.Errorf("stream %s exists and is not a mirror of %s", m.Name, l.cfg.Stream)
		}
		if have.Metadata[EpochMetadataKey] != want.Metadata[EpochMetadataKey] {
			// The origin was recreated: its sequences restarted, so the
			// mirror's history belongs to another epoch.
			return fmt.Errorf("mirror %s has epoch %s but origin %s has %d: delete the mirror so it is rebuilt",
				m.Name, have.Metadata[EpochMetadataKey], l.cfg.Stream, epoch)
		}
		if have.MaxAge != want.MaxAge || have.MaxMsgs != want.MaxMsgs || have.MaxBytes != want.MaxBytes ||
			have.MaxMsgsPerSubject != want.MaxMsgsPerSubject ||
			have.MaxConsumers != want.MaxConsumers || !have.MirrorDirect || !have.AllowDirect {
			want.Mirror = have.Mirror // a mirror's source cannot change
			if stream, err = l.js.UpdateStream(ctx, want); err != nil {
				return fmt.Errorf("update mirror %s: %w", m.Name, err)
			}
		}
	}
	l.stream, l.epoch, l.readName, l.originJS = stream, epoch, m.Name, originJS
	return nil
}

// originLookupTimeout bounds the look-up of the origin when a local mirror
// exists to fall back on.
const originLookupTimeout = 2 * time.Second

// adoptMirror opens an existing mirror with the epoch recorded on it when
// the origin cannot be reached. The mirror's limits are left as they are
// until a start that reaches the origin.
func (l *Log) adoptMirror(stream jetstream.Stream, name string, originJS jetstream.JetStream, originErr error) error {
	have := stream.CachedInfo().Config
	if have.Mirror == nil || have.Mirror.Name != l.cfg.Stream {
		return fmt.Errorf("stream %s exists and is not a mirror of %s", name, l.cfg.Stream)
	}
	epoch, err := parseEpoch(have.Metadata)
	if err != nil {
		return fmt.Errorf("origin stream %s unreachable (%w) and mirror %s has no epoch: %w", l.cfg.Stream, originErr, name, err)
	}
	l.log.Warn("origin stream unreachable; serving the local mirror under the epoch recorded on it",
		"mirror", name, "origin", l.cfg.Stream, "epoch", epoch, "err", originErr)
	l.stream, l.epoch, l.readName, l.originJS = stream, epoch, name, originJS
	return nil
}

// MirrorLag reports how many events the local mirror is behind its origin
// as the mirror last saw it (0 for a log that reads the origin). The
// figure is refreshed when events reach the mirror, so it stays put while
// the link to the origin is stalled; Head asks the origin.
func (l *Log) MirrorLag(ctx context.Context) (uint64, error) {
	if l.cfg.Mirror == nil {
		return 0, nil
	}
	info, err := l.stream.Info(ctx)
	if err != nil {
		return 0, fmt.Errorf("eventlog: mirror info: %w", err)
	}
	if info.Mirror == nil {
		return 0, nil
	}
	return info.Mirror.Lag, nil
}

// Head returns the last sequence of the origin stream. A log that reads a
// mirror asks the origin itself: the mirror's own idea of its lag is only
// refreshed when events reach it, so while the link between regions is
// stalled it is stale and would make ids that exist at the origin look
// beyond its end. Head fails when the origin cannot be reached.
func (l *Log) Head(ctx context.Context) (uint64, error) {
	if l.originJS != nil {
		origin, err := l.originJS.Stream(ctx, l.cfg.Stream)
		if err != nil {
			return 0, fmt.Errorf("eventlog: origin stream %s info: %w", l.cfg.Stream, err)
		}
		return origin.CachedInfo().State.LastSeq, nil
	}
	info, err := l.stream.Info(ctx)
	if err != nil {
		return 0, fmt.Errorf("eventlog: stream info: %w", err)
	}
	return info.State.LastSeq, nil
}
