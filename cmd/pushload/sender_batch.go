package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// batchPath is the bare baseline server's publish endpoint: a POST whose
// body is one event a line, "<channel>\t<payload JSON>\n". Only
// pushload's own baseline-ws (and the tests' fake server) speak it.
const batchPath = "/api/v1/batch"

// batchSender publishes to baseline-ws through batchPath, many events a
// request, so that publishing costs the tool little and the baseline
// measures the WebSocket side.
type batchSender struct {
	client *http.Client
	url    string
	names  []string
}

func newBatchSender(base *url.URL, names []string) *batchSender {
	return &batchSender{
		client: &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4, DisableCompression: true}, Timeout: 30 * time.Second},
		url:    strings.TrimSuffix(base.String(), "/") + batchPath,
		names:  names,
	}
}

func (s *batchSender) maxBatch() int { return 1024 }

func (s *batchSender) send(ctx context.Context, evs []pubEvent, build func([]byte, pubEvent) []byte, fail func(pubEvent, error)) {
	body := make([]byte, 0, 300*len(evs))
	for _, ev := range evs {
		body = append(body, s.names[ev.ch]...)
		body = append(body, '\t')
		body = build(body, ev)
		body = append(body, '\n')
	}
	if err := s.post(ctx, body); err != nil {
		for _, ev := range evs {
			fail(ev, err)
		}
	}
}

func (s *batchSender) post(ctx context.Context, body []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return fmt.Errorf("batch publish: %w", err)
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("batch publish: %s: %s", resp.Status, strings.TrimSpace(string(msg)))
	}
	return nil
}

func (s *batchSender) flush(context.Context) error { return nil }

func (s *batchSender) close() { s.client.CloseIdleConnections() }
