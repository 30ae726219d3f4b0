// Package snapshot checkpoints and restores a running function process with
// CRIU and keeps the images in a Store.
//
// # Pieces
//
//   - CRIU drives a criu binary in swrk mode through go-criu (the binary path is
//     configurable because the CRIU that works on new kernels is installed in a
//     private prefix by scripts/install-criu.sh, see DESIGN §5).
//   - Pack/Unpack turn an image directory into one zstd-compressed tar stream
//     and back. Upload streams the packed bytes of an image directory
//     straight into the store through an io.Pipe; Download unpacks while
//     reading and verifying. No full copy of the packed object ever lands on
//     disk. Checkpoint (dump + Upload) and Restore (Download + restore) join
//     them with CRIU for a caller that runs CRIU and talks to the store
//     itself; the local provider splits them, the agent running CRIU and the
//     provider moving the images.
//   - Store keeps one object per snapshot plus its Manifest. Every store
//     verifies the SHA-256 recorded in the manifest while the object is read:
//     the reader returned by Get fails at EOF with an error wrapping ErrCorrupt
//     when the bytes do not match, so a corrupt or truncated snapshot can never
//     be restored. Missing objects wrap errdefs.ErrNotFound, an unreachable
//     store wraps errdefs.ErrUnavailable. Put is atomic: on any error nothing
//     (not even a partial object) is left behind.
//
// # Encryption at rest
//
// A snapshot holds the whole memory of the function, secrets included. Wrap
// any store with NewEncryptedStore to encrypt objects with AES-256-GCM before
// they reach it. It is off by default in local mode (the images never leave
// the host) and recommended whenever MinIO/S3 is used.
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
// chunk) are all detected and reported as ErrCorrupt; a wrong key fails on the
// first chunk. The manifest (sizes, checksum of the ciphertext) is not
// secret and stays in clear text.
package snapshot
