package snapshot_test

import (
	"encoding/base64"
	"encoding/hex"
	"strconv"
)

func hexString(b []byte) string { return hex.EncodeToString(b) }
func b64(b []byte) string       { return base64.StdEncoding.EncodeToString(b) }
func itoa(i int) string         { return strconv.Itoa(i) }
