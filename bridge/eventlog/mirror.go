package eventlog

import (
	"context"
	"errors"
	"fmt"
	"strconv"

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
		if originJS, err = jetstream.NewWithDomain(l.js.Conn(), m.OriginDomain); err != nil {
			return fmt.Errorf("origin domain %q: %w", m.OriginDomain, err)
		}
	}
	origin, err := originJS.Stream(ctx, l.cfg.Stream)
	if err != nil {
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
	stream, err := l.js.Stream(ctx, m.Name)
	switch {
	case errors.Is(err, jetstream.ErrStreamNotFound):
		stream, err = l.js.CreateStream(ctx, want)
		if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
			stream, err = l.js.Stream(ctx, m.Name)
		}
		if err != nil {
			return fmt.Errorf("create mirror %s: %w", m.Name, err)
		}
		l.log.Info("event log mirror created", "mirror", m.Name, "origin", l.cfg.Stream, "epoch", epoch)
	case err != nil:
		return fmt.Errorf("look up mirror %s: %w", m.Name, err)
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
	l.stream, l.epoch, l.readName, l.origin = stream, epoch, m.Name, origin
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
	if l.origin != nil {
		info, err := l.origin.Info(ctx)
		if err != nil {
			return 0, fmt.Errorf("eventlog: origin stream %s info: %w", l.cfg.Stream, err)
		}
		return info.State.LastSeq, nil
	}
	info, err := l.stream.Info(ctx)
	if err != nil {
		return 0, fmt.Errorf("eventlog: stream info: %w", err)
	}
	return info.State.LastSeq, nil
}
