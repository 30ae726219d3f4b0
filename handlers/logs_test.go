package handlers

import (
	"bufio"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/openfaas/faas-provider/logs"
)

func TestLogs(t *testing.T) {
	ts := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	msgs := []logs.Message{
		{Name: "figlet", Namespace: "openfaas-fn", Instance: "figlet-1", Timestamp: ts, Text: "started"},
		{Name: "figlet", Namespace: "openfaas-fn", Instance: "figlet-1", Timestamp: ts.Add(time.Second), Text: "listening on 5000"},
		{Name: "other", Namespace: "openfaas-fn", Instance: "other-1", Timestamp: ts, Text: "not mine"},
	}
	cases := []struct {
		name  string
		query string
		want  []logs.Message
		check func(*testing.T, logs.Request)
	}{
		{name: "all, default namespace filled in", query: "name=figlet&follow=false", want: msgs[:2],
			check: func(t *testing.T, r logs.Request) {
				if r.Namespace != "openfaas-fn" || r.Follow || r.Name != "figlet" {
					t.Errorf("request = %+v", r)
				}
			}},
		{name: "tail", query: "name=figlet&tail=1", want: msgs[1:2],
			check: func(t *testing.T, r logs.Request) {
				if r.Tail != 1 {
					t.Errorf("tail = %d", r.Tail)
				}
			}},
		{name: "since and instance pass through", query: "name=figlet&since=2025-01-01T00:00:00Z&instance=figlet-1", want: msgs[:2],
			check: func(t *testing.T, r logs.Request) {
				if r.Since == nil || !r.Since.Equal(time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)) || r.Instance != "figlet-1" {
					t.Errorf("request = %+v", r)
				}
			}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, nil)
			e.fb.logs = msgs
			res, body := e.do(t, "GET", "/system/logs?"+tc.query, "", nil)
			if res.StatusCode != 200 {
				t.Fatalf("status %d: %q", res.StatusCode, body)
			}
			if ct := res.Header.Get("Content-Type"); ct != "application/x-ndjson" {
				t.Errorf("Content-Type = %q", ct)
			}
			var got []logs.Message
			sc := bufio.NewScanner(strings.NewReader(body))
			for sc.Scan() {
				var m logs.Message
				if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
					t.Fatalf("line %q: %v", sc.Text(), err)
				}
				got = append(got, m)
			}
			if len(got) != len(tc.want) {
				t.Fatalf("got %d messages: %q", len(got), body)
			}
			for i := range got {
				if got[i].Text != tc.want[i].Text || !got[i].Timestamp.Equal(tc.want[i].Timestamp) || got[i].Instance != tc.want[i].Instance {
					t.Errorf("message %d = %+v", i, got[i])
				}
			}
			e.fb.mu.Lock()
			req := e.fb.logReqs[0]
			e.fb.mu.Unlock()
			tc.check(t, req)
		})
	}
}

func TestLogsFollowStreams(t *testing.T) {
	e := newEnv(t, nil)
	e.fb.logs = []logs.Message{{Name: "figlet", Namespace: "openfaas-fn", Text: "first"}}
	client := &http.Client{Timeout: 10 * time.Second}
	res, err := client.Get(e.srv.URL + "/system/logs?name=figlet&follow=true")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	// The stream stays open (follow), yet the first message arrives now.
	line, err := bufio.NewReader(res.Body).ReadString('\n')
	if err != nil || !strings.Contains(line, `"text":"first"`) {
		t.Fatalf("line %q, %v", line, err)
	}
}

func TestLogsBadSince(t *testing.T) {
	e := newEnv(t, nil)
	res, body := e.do(t, "GET", "/system/logs?name=figlet&since=yesterday", "", nil)
	// faas-provider's own handler answers unparsable parameters with 422.
	if res.StatusCode != http.StatusUnprocessableEntity || strings.TrimSpace(body) == "" {
		t.Fatalf("status %d body %q", res.StatusCode, body)
	}
}
