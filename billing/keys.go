package billing

import (
	"crypto/sha256"
	"encoding/base32"
	"encoding/hex"
	"io"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// MaxKeys is how many unrevoked API keys one account may hold.
const MaxKeys = 10

// KeyPrefix starts every API key, so that leaked keys are easy to recognise
// (secret scanners) and garbage is refused before any lookup.
const KeyPrefix = "pmk_"

const (
	keyRandomBytes = 20 // 160 bits
	keyBodyLen     = 32 // base32 of 20 bytes, no padding
	shownPrefixLen = len(KeyPrefix) + 8
	maxKeyNameLen  = 64
)

var keyEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// APIKey is what is stored of a key: never the secret, only its hash (the
// document id) and a short prefix to recognise it by.
type APIKey struct {
	ID         string    `firestore:"id"`
	UID        string    `firestore:"uid"`
	Name       string    `firestore:"name"`
	Prefix     string    `firestore:"prefix"`
	CreatedAt  time.Time `firestore:"createdAt"`
	LastUsedAt time.Time `firestore:"lastUsedAt"`
	Revoked    bool      `firestore:"revoked"`
}

// NewAPIKey makes a key for uid from 160 random bits read from random. It
// returns the secret, to be shown once, the key to store, and the hash under
// which to store it. The name must pass ValidKeyName.
func NewAPIKey(random io.Reader, uid, name string, now time.Time) (secret string, key APIKey, hash string, err error) {
	if err := ValidKeyName(name); err != nil {
		return "", APIKey{}, "", err
	}
	b := make([]byte, keyRandomBytes+8)
	if _, err := io.ReadFull(random, b); err != nil {
		return "", APIKey{}, "", err
	}
	secret = KeyPrefix + keyEncoding.EncodeToString(b[:keyRandomBytes])
	key = APIKey{
		ID:        "key_" + hex.EncodeToString(b[keyRandomBytes:]),
		UID:       uid,
		Name:      strings.TrimSpace(name),
		Prefix:    secret[:shownPrefixLen],
		CreatedAt: now,
	}
	return secret, key, HashKey(secret), nil
}

// HashKey is the SHA-256 of a secret, in hex: the key's storage id.
func HashKey(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(sum[:])
}

// WellFormedKey reports whether s has the shape of a Paymeter API key, so
// that garbage is refused without a lookup.
func WellFormedKey(s string) bool {
	if len(s) != len(KeyPrefix)+keyBodyLen || !strings.HasPrefix(s, KeyPrefix) {
		return false
	}
	for _, c := range s[len(KeyPrefix):] {
		if !(c >= 'a' && c <= 'z' || c >= '2' && c <= '7') {
			return false
		}
	}
	return true
}

// ValidKeyName returns a CodeBadRequest error unless name is 1 to 64
// printable characters.
func ValidKeyName(name string) error {
	name = strings.TrimSpace(name)
	if name == "" || utf8.RuneCountInString(name) > maxKeyNameLen || !utf8.ValidString(name) {
		return Errorf(CodeBadRequest, "a key name is 1 to %d characters", maxKeyNameLen)
	}
	for _, r := range name {
		if !unicode.IsPrint(r) {
			return Errorf(CodeBadRequest, "a key name holds printable characters only")
		}
	}
	return nil
}
