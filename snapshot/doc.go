// Package snapshot checkpoints and restores a running function process with
// CRIU and keeps the images in a Store.
//
// # Pieces
//
//   - CRIU drives a criu binary in swrk mode through go-criu (the binary path is
//     configurable because the CRIU that works on new kernels is installed in a
//     private prefix by scripts/install-criu.sh, see docs/architecture.md).
//     A failed run is reported by the one line of criu's log that names the
//     cause; a restore whose images are damaged wraps ErrCorrupt.
//   - Pack/Unpack turn an image directory into one zstd-compressed tar stream
//     and back. Upload streams the packed bytes of an image directory
//     straight into the store through an io.Pipe; Download unpacks while
//     reading and verifying. No full copy of the packed object ever lands on
//     disk. The agent runs CRIU (Dump, CRIU.Restore) and the provider moves
//     the images (Upload, Download).
//   - Store keeps one object per snapshot plus its Manifest. Every store
//     verifies the SHA-256 recorded in the manifest while the object is read.
//     Missing objects wrap errdefs.ErrNotFound, an unreachable store wraps
//     errdefs.ErrUnavailable. Put is atomic: on any error nothing (not even a
//     partial object) is left behind, and what a killed process left is
//     removed by IncompleteCleaner.
//   - Presigner is a store (MinIO, or a LazyStore over it) that hands out
//     short-lived URLs for exactly one object, so a worker that holds no
//     store credentials (a Kubernetes pod) can move its own snapshot:
//     UploadURL packs and PUTs an image directory, the provider then
//     Commits the manifest; DownloadURL fetches, verifies against the
//     registered size and checksum, and unpacks, with the same verdicts as
//     Download. EncryptedStore is not a Presigner: a pod would need the key,
//     so with encryption on, pods always start cold.
//   - Seal records an unpacked image directory's files by inode and ctime,
//     so a cache of verified images can be checked before each restore with
//     a few stat calls instead of hashing it again.
//
// # Proven bad or merely unavailable
//
// A snapshot is worth deleting only when it is proven bad (ProvenBad): its
// object is missing, or it is corrupt (ErrCorrupt). Corrupt means the stored
// object disagrees with its manifest (the store is asked again before a
// short or mismatching read is blamed on the object rather than the
// transfer), or all of it arrived and matched yet does not decompress,
// untar or decrypt, or CRIU rejects the images as damaged. A dropped
// connection, a timeout, a store that is down or a full local disk say
// nothing about the snapshot: those errors wrap errdefs.ErrUnavailable or
// the underlying errno, never ErrCorrupt, and name the real cause.
//
// # Encryption at rest
//
// A snapshot holds the whole memory of the function, secrets included. Wrap
// any store with NewEncryptedStore to encrypt objects with AES-256-GCM before
// they reach it. It is off by default in local mode (the images never leave
// the host) and recommended whenever MinIO/S3 is used. An encrypted store
// cannot presign, so it keeps Kubernetes pods cold.
//
// The key is 32 bytes, loaded with LoadKeyFile from a file holding either the
// raw 32 bytes, 64 hex digits, or standard base64 of 32 bytes (so a
// Kubernetes Secret mounted as a file works unchanged). Generate one with
//
//	head -c 32 /dev/urandom > /etc/pronghorn/snapshot.key
//	kubectl create secret generic pronghorn-snapshot-key --from-file=key=/etc/pronghorn/snapshot.key
//
// The ciphertext format is a STREAM-style chunked AEAD so encryption stays
// streaming: a header (magic "PHGCM1", chunk size, 7-byte random nonce
// prefix) followed by chunks of at most 64 KiB plaintext, each sealed with
// nonce = prefix ‖ uint32 chunk counter ‖ last-chunk flag and the header as
// additional data. Reordering, tampering and truncation (a missing final
// chunk) of a ciphertext that arrived whole are all detected and reported as
// ErrCorrupt. The manifest records a key id (an HMAC of a fixed string, not
// the key): a snapshot sealed with another key is reported as
// errdefs.ErrInvalid, since it is intact, only not ours; a manifest without
// one (older snapshots) fails authentication on the first chunk instead. The
// manifest (sizes, checksum of the ciphertext, key id) is not secret and
// stays in clear text.
package snapshot
