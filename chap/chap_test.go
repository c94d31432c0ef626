package chap

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

var (
	keyOnce sync.Once
	testKey *rsa.PrivateKey
)

func key(t *testing.T) *rsa.PrivateKey {
	t.Helper()
	keyOnce.Do(func() {
		var err error
		if testKey, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
			t.Fatal(err)
		}
	})
	return testKey
}

func writePEM(t *testing.T, typ string, der []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "key.pem")
	if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestRoundTripEveryKeyForm(t *testing.T) {
	k := key(t)
	pkcs8, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	pkix, err := x509.MarshalPKIXPublicKey(&k.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	privs := map[string]string{
		"pkcs1": writePEM(t, "RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(k)),
		"pkcs8": writePEM(t, "PRIVATE KEY", pkcs8),
	}
	pubs := map[string]string{
		"pkcs1": writePEM(t, "RSA PUBLIC KEY", x509.MarshalPKCS1PublicKey(&k.PublicKey)),
		"pkix":  writePEM(t, "PUBLIC KEY", pkix),
	}
	for pn, pp := range pubs {
		pub, err := ReadPublicKey(pp)
		if err != nil {
			t.Fatalf("%s: %v", pn, err)
		}
		ct, err := Encrypt(pub, "s3cret-Pass!")
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(ct, "s3cret") {
			t.Fatal("ciphertext holds the password")
		}
		for kn, kp := range privs {
			priv, err := ReadPrivateKey(kp)
			if err != nil {
				t.Fatalf("%s: %v", kn, err)
			}
			// upstream's output may be wrapped; b64decode ignores the breaks
			wrapped := ct[:20] + "\n" + ct[20:]
			got, err := Decrypt(priv, wrapped)
			if err != nil || got != "s3cret-Pass!" {
				t.Fatalf("%s/%s: got %q, %v", pn, kn, got, err)
			}
		}
	}
}

func TestDecryptSHA1FromPythonCrypto(t *testing.T) {
	k := key(t)
	ct, err := rsa.EncryptOAEP(sha1.New(), rand.Reader, &k.PublicKey, []byte("old-style"), nil)
	if err != nil {
		t.Fatal(err)
	}
	got, err := Decrypt(k, base64.StdEncoding.EncodeToString(ct))
	if err != nil || got != "old-style" {
		t.Fatalf("got %q, %v", got, err)
	}
}

func TestErrorsHideSecrets(t *testing.T) {
	k := key(t)
	other, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	ct, err := Encrypt(&other.PublicKey, "hidden-password")
	if err != nil {
		t.Fatal(err)
	}
	for _, stored := range []string{ct, "not base64 !!!", "hidden-password"} {
		_, err := Decrypt(k, stored)
		if err == nil {
			t.Fatalf("%q decrypted with the wrong key", stored)
		}
		if strings.Contains(err.Error(), "hidden-password") || strings.Contains(err.Error(), ct[:16]) {
			t.Fatalf("error leaks: %v", err)
		}
	}
	if _, err := ReadPrivateKey(writePEM(t, "RSA PUBLIC KEY", x509.MarshalPKCS1PublicKey(&k.PublicKey))); err == nil {
		t.Fatal("a public key was accepted as private")
	}
	if _, err := ReadPublicKey(filepath.Join(t.TempDir(), "missing")); err == nil || !strings.Contains(err.Error(), "missing") {
		t.Fatalf("missing file: %v", err)
	}
}
