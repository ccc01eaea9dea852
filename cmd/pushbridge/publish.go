package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/pushbridge/pushbridge/bridge/eventlog"
	"github.com/pushbridge/pushbridge/configs"
)

func runPublish(ctx context.Context, e env) error {
	fs := flag.NewFlagSet("publish", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	baseURL := fs.String("url", "", "gateway base URL, e.g. http://127.0.0.1:8080 (publish through the HTTP API)")
	natsURL := fs.String("nats-url", "", "NATS URL (publish to the channel subject directly)")
	channel := fs.String("channel", "", "channel to publish to")
	data := fs.String("data", "", "event payload, a JSON object")
	msgID := fs.String("msg-id", "", "idempotency key (Nats-Msg-Id)")
	tok := fs.String("token", "", "publisher token for --url (default: minted from jwtSecret)")
	configPath := fs.String("config", "", "config file (jwtSecret, jwtAlgorithms and publish.claim for --url; the stream's subject prefix for --nats-url)")
	timeout := fs.Duration("timeout", 10*time.Second, "how long to wait for the acknowledgement")
	if err := parseFlags(fs, e.args); err != nil {
		return err
	}
	if *channel == "" || *data == "" || (*baseURL == "") == (*natsURL == "") {
		fmt.Fprintln(e.stderr, "need --channel, --data and exactly one of --url or --nats-url")
		return errUsage
	}
	if err := eventlog.ValidateChannel(*channel); err != nil {
		return err
	}
	if err := eventlog.ValidatePayload([]byte(*data), 0); err != nil {
		return fmt.Errorf("--data: %w", err)
	}
	cfg, err := cliConfig(*configPath, e)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	if *natsURL != "" {
		return publishNATS(ctx, e, *natsURL, &cfg, *channel, *data, *msgID)
	}
	token := *tok
	if token == "" {
		spec, err := tokenSpecOf(&cfg, "")
		if err != nil {
			return err
		}
		if token, err = spec.mint("", []string{*channel}, 5*time.Minute); err != nil {
			return err
		}
	}
	return publishHTTP(ctx, e, *baseURL, token, *channel, *data, *msgID)
}

func publishHTTP(ctx context.Context, e env, base, token, channel, data, msgID string) error {
	u := strings.TrimSuffix(base, "/") + "/api/v1/channels/" + url.PathEscape(channel) + "/events"
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader([]byte(data)))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+token)
	if msgID != "" {
		req.Header.Set("Idempotency-Key", msgID)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("publish: %w", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("publish refused: %s: %s", resp.Status, strings.TrimSpace(string(body)))
	}
	var out struct {
		ID        string `json:"id"`
		Duplicate bool   `json:"duplicate"`
	}
	if err := json.Unmarshal(body, &out); err != nil {
		return fmt.Errorf("publish: unexpected answer %q", body)
	}
	printPublished(e, out.ID, out.Duplicate)
	return nil
}

func printPublished(e env, id string, dup bool) {
	if dup {
		fmt.Fprintf(e.stdout, "%s (duplicate: already stored)\n", id)
		return
	}
	fmt.Fprintln(e.stdout, id)
}

// publishNATS publishes straight to the channel's subject, the contract any
// NATS client can use, and prints the event id from the acknowledgement.
func publishNATS(ctx context.Context, e env, natsURL string, cfg *configs.Config, channel, data, msgID string) error {
	// The configured credentials, TLS and domain, but a command fails at
	// once rather than retrying as the gateway does.
	connOpts, err := cfg.NATSOptions("pushbridge-publish")
	if err != nil {
		return err
	}
	connOpts = append(connOpts, nats.RetryOnFailedConnect(false), nats.MaxReconnects(0))
	nc, err := nats.Connect(natsURL, connOpts...)
	if err != nil {
		return fmt.Errorf("connect to %s: %w", natsURL, err)
	}
	defer nc.Close()
	js, err := eventlog.NewJetStream(nc, cfg.JetStreamDomain())
	if err != nil {
		return err
	}
	var opts []jetstream.PublishOpt
	if msgID != "" {
		opts = append(opts, jetstream.WithMsgID(msgID))
	}
	ack, err := js.Publish(ctx, cfg.Stream.SubjectPrefix+"."+channel, []byte(data), opts...)
	if err != nil {
		return fmt.Errorf("publish: %w", err)
	}
	stream, err := js.Stream(ctx, ack.Stream)
	if err != nil {
		return fmt.Errorf("stream %s: %w", ack.Stream, err)
	}
	epoch := stream.CachedInfo().Config.Metadata[eventlog.EpochMetadataKey]
	if epoch == "" {
		return errors.New("the stream has no pushbridge epoch; was it created by pushbridge?")
	}
	printPublished(e, fmt.Sprintf("%s-%d", epoch, ack.Sequence), ack.Duplicate)
	return nil
}
