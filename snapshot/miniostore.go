package snapshot

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
	"github.com/pronghorn-openfaas/pronghorn/errdefs"
)

// MinIOConfig configures an S3/MinIO store.
type MinIOConfig struct {
	Endpoint  string // host:port, no scheme
	Bucket    string
	AccessKey string
	SecretKey string
	UseTLS    bool
	// Transport, when set, replaces the HTTP transport. A worker runs in its
	// own network namespace and may only reach the store through a unix
	// socket on the shared filesystem; a transport that dials it does that.
	Transport http.RoundTripper
	// MaxRetries bounds minio-go's own retries (default 3). minio-go
	// defaults to 10 with backoff, which turns an unreachable store into a
	// long hang instead of a prompt ErrUnavailable.
	MaxRetries int
}

// MinIOStore keeps the object at objects/<key> and the manifest as a small
// sidecar object at manifests/<key>.json, written after the object. The
// checksum is only known once the stream ends, so it cannot travel in the
// object's own user metadata, which is sent before the body. It is a
// Presigner: presigned URLs point at objects/<key>, and Commit writes the
// manifest.
type MinIOStore struct {
	client *minio.Client
	bucket string
}

var (
	_ Store             = (*MinIOStore)(nil)
	_ IncompleteCleaner = (*MinIOStore)(nil)
)

// partSize bounds minio-go's memory use for streams of unknown length (its
// default for size -1 is hundreds of MiB per part).
const partSize = 16 << 20

// NewMinIOStore connects and creates the bucket if it does not exist.
func NewMinIOStore(ctx context.Context, cfg MinIOConfig) (*MinIOStore, error) {
	if cfg.Endpoint == "" || cfg.Bucket == "" {
		return nil, fmt.Errorf("minio store: endpoint and bucket are required: %w", errdefs.ErrInvalid)
	}
	retries := cfg.MaxRetries
	if retries <= 0 {
		retries = 3
	}
	client, err := minio.New(cfg.Endpoint, &minio.Options{
		Creds:      credentials.NewStaticV4(cfg.AccessKey, cfg.SecretKey, ""),
		Secure:     cfg.UseTLS,
		Transport:  cfg.Transport,
		MaxRetries: retries,
	})
	if err != nil {
		return nil, fmt.Errorf("minio store %s: %w: %w", cfg.Endpoint, errdefs.ErrInvalid, err)
	}
	s := &MinIOStore{client: client, bucket: cfg.Bucket}
	ok, err := client.BucketExists(ctx, cfg.Bucket)
	if err != nil {
		return nil, s.wrap("bucket "+cfg.Bucket, err)
	}
	if !ok {
		if err := client.MakeBucket(ctx, cfg.Bucket, minio.MakeBucketOptions{}); err != nil {
			// Another worker may have created it in the meantime.
			if code := minio.ToErrorResponse(err).Code; code != "BucketAlreadyOwnedByYou" && code != "BucketAlreadyExists" {
				return nil, s.wrap("make bucket "+cfg.Bucket, err)
			}
		}
	}
	return s, nil
}

func objectName(key string) string   { return "objects/" + key }
func manifestName(key string) string { return "manifests/" + key + ".json" }

// wrap classifies minio-go errors into errdefs kinds. Everything that says
// the server or the way to it failed (connection refused or reset, a body cut
// short, a timeout, a 5xx) is ErrUnavailable: it never proves a snapshot bad.
func (s *MinIOStore) wrap(op string, err error) error {
	if err == nil {
		return nil
	}
	resp := minio.ToErrorResponse(err)
	switch resp.Code {
	case "NoSuchKey", "NoSuchBucket":
		return fmt.Errorf("minio store: %s: %w: %w", op, errdefs.ErrNotFound, err)
	case "InvalidBucketName", "InvalidObjectName", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch":
		return fmt.Errorf("minio store: %s: %w: %w", op, errdefs.ErrInvalid, err)
	}
	var netErr net.Error
	if errors.As(err, &netErr) || resp.StatusCode >= http.StatusInternalServerError ||
		errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.EPIPE) ||
		errors.Is(err, context.DeadlineExceeded) || strings.Contains(err.Error(), "connection refused") {
		return fmt.Errorf("minio store: %s: %w: %w", op, errdefs.ErrUnavailable, err)
	}
	return fmt.Errorf("minio store: %s: %w", op, err)
}

// Put implements Store.
func (s *MinIOStore) Put(ctx context.Context, key string, r io.Reader, m Manifest) (Manifest, error) {
	if err := validateKey(key); err != nil {
		return Manifest{}, err
	}
	hr := newHashingReader(r)
	// Size -1 streams through multipart upload; minio-go aborts the upload
	// if the reader fails, so no partial object becomes visible.
	_, err := s.client.PutObject(ctx, s.bucket, objectName(key), hr, -1, minio.PutObjectOptions{
		ContentType: "application/zstd",
		PartSize:    partSize,
	})
	if err != nil {
		return Manifest{}, s.wrap("put "+key, err)
	}
	m.Key = key
	m.PackedBytes = hr.n
	m.SHA256 = hr.sum()
	if m.CreatedAt.IsZero() {
		m.CreatedAt = time.Now().UTC()
	}
	if err := s.putManifest(ctx, key, m); err != nil {
		// Without a manifest the object is unreachable; remove it with a
		// fresh context in case ctx is what failed.
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		s.client.RemoveObject(cctx, s.bucket, objectName(key), minio.RemoveObjectOptions{})
		cancel()
		return Manifest{}, err
	}
	return m, nil
}

// Get implements Store.
func (s *MinIOStore) Get(ctx context.Context, key string) (io.ReadCloser, Manifest, error) {
	m, err := s.Stat(ctx, key)
	if err != nil {
		return nil, Manifest{}, err
	}
	obj, err := s.client.GetObject(ctx, s.bucket, objectName(key), minio.GetObjectOptions{})
	if err != nil {
		return nil, Manifest{}, s.wrap("get "+key, err)
	}
	// GetObject is lazy; Stat surfaces a missing object now instead of in
	// the middle of a restore.
	if _, err := obj.Stat(); err != nil {
		obj.Close()
		return nil, Manifest{}, s.wrap("get "+key, err)
	}
	recheck := func() (Manifest, int64, error) {
		cur, err := s.Stat(ctx, key)
		if err != nil {
			return Manifest{}, 0, err
		}
		info, err := s.client.StatObject(ctx, s.bucket, objectName(key), minio.StatObjectOptions{})
		if err != nil {
			return Manifest{}, 0, s.wrap("stat object "+key, err)
		}
		return cur, info.Size, nil
	}
	return newVerifyingReader(minioReader{obj, s, key}, m, recheck), m, nil
}

// minioReader classifies the errors of an object's body like those of any
// other call, so that the NoSuchKey of an object deleted mid-read stays
// ErrNotFound.
type minioReader struct {
	obj *minio.Object
	s   *MinIOStore
	key string
}

func (r minioReader) Read(p []byte) (int, error) {
	n, err := r.obj.Read(p)
	if err != nil && err != io.EOF {
		err = r.s.wrap("read "+r.key, err)
	}
	return n, err
}

func (r minioReader) Close() error { return r.obj.Close() }

// Stat implements Store.
func (s *MinIOStore) Stat(ctx context.Context, key string) (Manifest, error) {
	if err := validateKey(key); err != nil {
		return Manifest{}, err
	}
	return s.readManifest(ctx, manifestName(key), key)
}

func (s *MinIOStore) readManifest(ctx context.Context, name, key string) (Manifest, error) {
	obj, err := s.client.GetObject(ctx, s.bucket, name, minio.GetObjectOptions{})
	if err != nil {
		return Manifest{}, s.wrap("stat "+key, err)
	}
	defer obj.Close()
	b, err := io.ReadAll(io.LimitReader(obj, 1<<20))
	if err != nil {
		return Manifest{}, s.wrap("stat "+key, err)
	}
	return unmarshalManifest(b)
}

// Delete implements Store.
func (s *MinIOStore) Delete(ctx context.Context, key string) error {
	if _, err := s.Stat(ctx, key); err != nil {
		return err
	}
	if err := s.client.RemoveObject(ctx, s.bucket, manifestName(key), minio.RemoveObjectOptions{}); err != nil {
		return s.wrap("delete "+key, err)
	}
	if err := s.client.RemoveObject(ctx, s.bucket, objectName(key), minio.RemoveObjectOptions{}); err != nil {
		return s.wrap("delete "+key, err)
	}
	return nil
}

// List implements Store.
func (s *MinIOStore) List(ctx context.Context, prefix string) ([]Manifest, error) {
	var out []Manifest
	for info := range s.client.ListObjects(ctx, s.bucket, minio.ListObjectsOptions{Prefix: "manifests/" + prefix, Recursive: true}) {
		if info.Err != nil {
			return nil, s.wrap("list "+prefix, info.Err)
		}
		if !strings.HasSuffix(info.Key, ".json") {
			continue
		}
		key := strings.TrimSuffix(strings.TrimPrefix(info.Key, "manifests/"), ".json")
		m, err := s.readManifest(ctx, info.Key, key)
		if errors.Is(err, errdefs.ErrNotFound) {
			continue // deleted concurrently
		}
		if err != nil {
			return nil, err
		}
		out = append(out, m)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out, nil
}

// CleanIncomplete implements IncompleteCleaner: it aborts the unfinished
// multipart uploads under the store's prefixes (a Put killed mid-stream;
// they hold parts but are invisible) and removes objects whose manifest was
// never written (a Put killed between its two writes, or a Delete between
// its two removes).
//
// An object a worker uploaded through PresignPut has no manifest until
// Commit, so it is removed too: at provider start nobody is left to commit
// it, the provider that presigned the URL is gone. A committed one has its
// manifest and is kept. A worker may still PUT to a URL presigned before
// the start after this ran; that object waits for the next start, which is
// why presigned URLs should live no longer than one upload takes.
func (s *MinIOStore) CleanIncomplete(ctx context.Context) (int, error) {
	n := 0
	aborted := map[string]bool{}
	// MinIO lists uploads by exact object name or all of them, not by
	// prefix, so filter here.
	for up := range s.client.ListIncompleteUploads(ctx, s.bucket, "", true) {
		if up.Err != nil {
			return n, s.wrap("list incomplete uploads", up.Err)
		}
		if !strings.HasPrefix(up.Key, "objects/") && !strings.HasPrefix(up.Key, "manifests/") {
			continue
		}
		n++
		if aborted[up.Key] {
			continue
		}
		// This aborts every upload of the object name at once.
		if err := s.client.RemoveIncompleteUpload(ctx, s.bucket, up.Key); err != nil {
			return n, s.wrap("abort upload "+up.Key, err)
		}
		aborted[up.Key] = true
	}
	for info := range s.client.ListObjects(ctx, s.bucket, minio.ListObjectsOptions{Prefix: "objects/", Recursive: true}) {
		if info.Err != nil {
			return n, s.wrap("list objects", info.Err)
		}
		key := strings.TrimPrefix(info.Key, "objects/")
		_, err := s.client.StatObject(ctx, s.bucket, manifestName(key), minio.StatObjectOptions{})
		if minio.ToErrorResponse(err).Code != "NoSuchKey" {
			if err != nil {
				return n, s.wrap("stat manifest "+key, err)
			}
			continue
		}
		if err := s.client.RemoveObject(ctx, s.bucket, info.Key, minio.RemoveObjectOptions{}); err != nil {
			return n, s.wrap("remove orphan "+key, err)
		}
		n++
	}
	return n, nil
}
