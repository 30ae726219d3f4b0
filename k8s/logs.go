package k8s

import (
	"bufio"
	"context"
	"strings"
	"sync"
	"time"

	"github.com/openfaas/faas-provider/logs"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// maxLogLine bounds one log line; longer lines are cut rather than failing
// the whole stream.
const maxLogLine = 1 << 20

// Query streams the function container's logs from every pod of the
// function (or the one named by req.Instance), merged as they arrive. The
// kubelet applies tail and since per pod, as in faas-netes. With follow, the
// pods running now are followed; pods started later are not (faas-cli logs
// can be re-run for those).
func (b *Backend) Query(ctx context.Context, req logs.Request) (<-chan logs.Message, error) {
	req.Namespace = b.namespace(req.Namespace)
	if err := b.served(ctx, req.Namespace); err != nil {
		return nil, err
	}
	if _, err := b.getFunction(ctx, req.Namespace, req.Name); err != nil {
		return nil, err
	}
	pods, err := b.client.CoreV1().Pods(req.Namespace).List(ctx, metav1.ListOptions{LabelSelector: functionLabel + "=" + req.Name})
	if err != nil {
		return nil, apiError(err, "list pods of %s.%s", req.Name, req.Namespace)
	}
	opts := corev1.PodLogOptions{Container: req.Name, Follow: req.Follow, Timestamps: true}
	if req.Tail > 0 {
		opts.TailLines = ptr(int64(req.Tail))
	}
	if req.Since != nil && !req.Since.IsZero() {
		opts.SinceTime = &metav1.Time{Time: *req.Since}
	}

	out := make(chan logs.Message)
	var wg sync.WaitGroup
	for _, p := range pods.Items {
		if req.Instance != "" && p.Name != req.Instance {
			continue
		}
		if p.Status.Phase == corev1.PodPending {
			// No container has started, so there is nothing to read yet.
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			b.podLogs(ctx, req, p.Name, opts, out)
		}()
	}
	go func() {
		wg.Wait()
		close(out)
	}()
	return out, nil
}

func (b *Backend) podLogs(ctx context.Context, req logs.Request, pod string, opts corev1.PodLogOptions, out chan<- logs.Message) {
	stream, err := b.client.CoreV1().Pods(req.Namespace).GetLogs(pod, &opts).Stream(ctx)
	if err != nil {
		if ctx.Err() == nil {
			b.log.Warn("read pod logs", "function", req.Name+"."+req.Namespace, "pod", pod, "err", err)
		}
		return
	}
	defer stream.Close()
	// Closing the stream is what unblocks a follow read when the client
	// leaves.
	stop := context.AfterFunc(ctx, func() { stream.Close() })
	defer stop()

	sc := bufio.NewScanner(stream)
	sc.Buffer(make([]byte, 0, 64*1024), maxLogLine)
	for sc.Scan() {
		ts, text := splitTimestamp(sc.Text())
		m := logs.Message{Name: req.Name, Namespace: req.Namespace, Instance: pod, Timestamp: ts, Text: text}
		select {
		case out <- m:
		case <-ctx.Done():
			return
		}
	}
}

// splitTimestamp splits the RFC 3339 timestamp the kubelet puts before each
// line (Timestamps: true). A line without one keeps its text and gets the
// time it was read.
func splitTimestamp(line string) (time.Time, string) {
	if head, rest, ok := strings.Cut(line, " "); ok {
		if ts, err := time.Parse(time.RFC3339Nano, head); err == nil {
			return ts, rest
		}
	}
	return time.Now().UTC(), line
}
