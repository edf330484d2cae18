package main

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net/http"
	"strings"
	"sync"
	"time"
)

// googleIssuer is the issuer of Google's ID tokens.
const googleIssuer = "https://accounts.google.com"

// signatureRemoved is what Cloud Run puts in place of the signature of the
// token it verified before passing the request to a private service.
const signatureRemoved = "SIGNATURE_REMOVED_BY_GOOGLE"

// authority stands in for Google's certificate and token infrastructure: a
// CA that every process of the rehearsal trusts (SSL_CERT_FILE), so that the
// front can answer for api.stripe.com, cloudtasks.googleapis.com and the
// run.app hosts, and the RSA key that signs "Google" ID tokens.
type authority struct {
	caCert *x509.Certificate
	caKey  *ecdsa.PrivateKey
	caPEM  []byte
	idKey  *rsa.PrivateKey
	kid    string

	mu    sync.Mutex
	certs map[string]*tls.Certificate
}

func newAuthority() (*authority, error) {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "Paymeter rehearsal CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, err
	}
	caCert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	idKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, err
	}
	return &authority{caCert: caCert, caKey: caKey, idKey: idKey, kid: "rehearsal-google-1",
		caPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), certs: map[string]*tls.Certificate{}}, nil
}

// certFor returns a certificate for host signed by the CA.
func (a *authority) certFor(host string) (*tls.Certificate, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if c, ok := a.certs[host]; ok {
		return c, nil
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	serial, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: host},
		DNSNames:     []string{host},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, a.caCert, &key.PublicKey, a.caKey)
	if err != nil {
		return nil, err
	}
	c := &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
	a.certs[host] = c
	return c, nil
}

// pool is the CA as a root pool, for the rehearsal's own clients.
func (a *authority) pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(a.caCert)
	return p
}

// idToken signs claims as Google signs ID tokens (RS256, a kid in the header).
func (a *authority) idToken(claims map[string]any) string {
	return signRS256(a.idKey, a.kid, claims)
}

// googleToken is an ID token of Google for email, audience aud, valid an hour.
func (a *authority) googleToken(email, aud string) string {
	now := time.Now()
	return a.idToken(map[string]any{"iss": googleIssuer, "aud": aud, "azp": email, "sub": "1" + fmt.Sprint(len(email)),
		"email": email, "email_verified": true, "iat": now.Unix(), "exp": now.Add(time.Hour).Unix()})
}

// jwks is the key set Google publishes at www.googleapis.com/oauth2/v3/certs.
func (a *authority) jwks() []byte {
	b, _ := json.Marshal(map[string]any{"keys": []map[string]string{jwk(&a.idKey.PublicKey, a.kid)}})
	return b
}

func jwk(k *rsa.PublicKey, kid string) map[string]string {
	b64 := base64.RawURLEncoding
	return map[string]string{"kid": kid, "kty": "RSA", "alg": "RS256", "use": "sig",
		"n": b64.EncodeToString(k.N.Bytes()), "e": b64.EncodeToString(big.NewInt(int64(k.E)).Bytes())}
}

func signRS256(key *rsa.PrivateKey, kid string, claims map[string]any) string {
	b64 := base64.RawURLEncoding
	h, _ := json.Marshal(map[string]string{"alg": "RS256", "typ": "JWT", "kid": kid})
	p, _ := json.Marshal(claims)
	signing := b64.EncodeToString(h) + "." + b64.EncodeToString(p)
	sum := sha256.Sum256([]byte(signing))
	sig, err := rsa.SignPKCS1v15(rand.Reader, key, crypto.SHA256, sum[:])
	if err != nil {
		panic(err) // a 2048-bit key of our own: cannot fail
	}
	return signing + "." + b64.EncodeToString(sig)
}

// keySet is the RSA keys of one token issuer, by kid.
type keySet map[string]*rsa.PublicKey

// fetchKeys reads a JWKS document from url.
func fetchKeys(url string) (keySet, error) {
	c := &http.Client{Timeout: 5 * time.Second}
	res, err := c.Get(url)
	if err != nil {
		return nil, err
	}
	defer res.Body.Close()
	var doc struct {
		Keys []struct{ Kid, N, E string } `json:"keys"`
	}
	if err := json.NewDecoder(res.Body).Decode(&doc); err != nil {
		return nil, fmt.Errorf("keys at %s: %w", url, err)
	}
	ks := keySet{}
	b64 := base64.RawURLEncoding
	for _, k := range doc.Keys {
		n, err1 := b64.DecodeString(k.N)
		e, err2 := b64.DecodeString(k.E)
		if err1 != nil || err2 != nil {
			continue
		}
		ks[k.Kid] = &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: int(new(big.Int).SetBytes(e).Int64())}
	}
	if len(ks) == 0 {
		return nil, fmt.Errorf("no RSA keys at %s", url)
	}
	return ks, nil
}

// verifyRS256 checks token's RS256 signature with keys and returns its
// header and claims.
func verifyRS256(token string, keys keySet) (map[string]any, error) {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return nil, errors.New("not a JWT")
	}
	b64 := base64.RawURLEncoding
	var h struct{ Alg, Kid string }
	hb, err := b64.DecodeString(parts[0])
	if err != nil || json.Unmarshal(hb, &h) != nil {
		return nil, errors.New("bad header")
	}
	if h.Alg != "RS256" {
		return nil, fmt.Errorf("alg %q", h.Alg)
	}
	key, ok := keys[h.Kid]
	if !ok {
		return nil, fmt.Errorf("unknown key %q", h.Kid)
	}
	sig, err := b64.DecodeString(parts[2])
	if err != nil {
		return nil, errors.New("bad signature encoding")
	}
	sum := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	if err := rsa.VerifyPKCS1v15(key, crypto.SHA256, sum[:], sig); err != nil {
		return nil, errors.New("bad signature")
	}
	pb, err := b64.DecodeString(parts[1])
	if err != nil {
		return nil, errors.New("bad payload")
	}
	var claims map[string]any
	if err := json.Unmarshal(pb, &claims); err != nil {
		return nil, errors.New("bad payload")
	}
	return claims, nil
}

// stripSignature is what Cloud Run forwards to a private service: the
// token's header and claims with the signature replaced by the marker.
func stripSignature(header []byte, claims map[string]any) string {
	b64 := base64.RawURLEncoding
	p, _ := json.Marshal(claims)
	return b64.EncodeToString(header) + "." + b64.EncodeToString(p) + "." + signatureRemoved
}
