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

// httpSender publishes through pushbridge's HTTP publish API: POST
// <base>/api/v1/channels/{channel}/events with a bearer token, one event a
// request, over keep-alive connections (one per worker).
type httpSender struct {
	client *http.Client
	base   string
	token  string
	names  []string
}

func newHTTPSender(base *url.URL, token string, workers int, names []string) *httpSender {
	tr := &http.Transport{MaxIdleConnsPerHost: workers, MaxConnsPerHost: workers, IdleConnTimeout: time.Minute,
		DisableCompression: true}
	return &httpSender{client: &http.Client{Transport: tr, Timeout: 30 * time.Second},
		base: strings.TrimSuffix(base.String(), "/"), token: token, names: names}
}

func (s *httpSender) maxBatch() int { return 1 }

func (s *httpSender) send(ctx context.Context, evs []pubEvent, build func([]byte, pubEvent) []byte, fail func(pubEvent, error)) {
	for _, ev := range evs {
		if err := s.post(ctx, ev, build(make([]byte, 0, 256), ev)); err != nil {
			fail(ev, err)
		}
	}
}

func (s *httpSender) post(ctx context.Context, ev pubEvent, body []byte) error {
	u := s.base + "/api/v1/channels/" + url.PathEscape(s.names[ev.ch]) + "/events"
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+s.token)
	resp, err := s.client.Do(req)
	if err != nil {
		return fmt.Errorf("publish: %w", err)
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("publish: %s: %s", resp.Status, strings.TrimSpace(string(msg)))
	}
	return nil
}

func (s *httpSender) flush(context.Context) error { return nil }

func (s *httpSender) close() { s.client.CloseIdleConnections() }
