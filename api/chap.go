package api

import (
	"fmt"
	"os"

	"ceph-iscsi/chap"
	"ceph-iscsi/config"
)

// chapKeys encrypts and decrypts CHAP passwords stored in the config (spec
// 3.3) with package chap. Encryption is on only while both key files exist,
// checked on each use as upstream does, so adding the keys needs no restart.
type chapKeys struct{ pub, priv string }

func (k chapKeys) enabled() bool {
	_, e1 := os.Stat(k.pub)
	_, e2 := os.Stat(k.priv)
	return e1 == nil && e2 == nil
}

func (k chapKeys) encrypt(plain string) (string, error) {
	pub, err := chap.ReadPublicKey(k.pub)
	if err != nil {
		return "", fmt.Errorf("CHAP public key: %w", err)
	}
	return chap.Encrypt(pub, plain)
}

func (k chapKeys) decrypt(stored string) (string, error) {
	key, err := chap.ReadPrivateKey(k.priv)
	if err != nil {
		return "", fmt.Errorf("CHAP private key: %w", err)
	}
	return chap.Decrypt(key, stored)
}

// plain returns a stored password in clear text.
func (k chapKeys) plain(stored string, encrypted bool) (string, error) {
	if !encrypted || stored == "" {
		return stored, nil
	}
	return k.decrypt(stored)
}

// credentials are the four CHAP strings of a request, in clear text.
type credentials struct {
	Username, Password, MutualUsername, MutualPassword string
}

func credentialsFrom(f form) credentials {
	return credentials{
		Username:       f.get("username", ""),
		Password:       f.get("password", ""),
		MutualUsername: f.get("mutual_username", ""),
		MutualPassword: f.get("mutual_password", ""),
	}
}

func (c credentials) valid() string {
	return config.ValidCredentials(c.Username, c.Password, c.MutualUsername, c.MutualPassword)
}

func (c credentials) vars() map[string]string {
	return map[string]string{
		"username": c.Username, "password": c.Password,
		"mutual_username": c.MutualUsername, "mutual_password": c.MutualPassword,
	}
}

// authBlock builds the stored form of c. A password whose clear text equals
// what cur holds keeps its stored (maybe encrypted) form, so repeating a
// request, or running a mutation again after a lost race, changes nothing:
// OAEP ciphertexts differ on every encryption.
func (k chapKeys) authBlock(c credentials, cur config.Auth) (config.Auth, error) {
	enc := k.enabled()
	a := config.Auth{
		Username: c.Username, MutualUsername: c.MutualUsername,
		PasswordEncryptionEnabled: enc, MutualPasswordEncryptionEnabled: enc,
		Extra: cur.Extra,
	}
	var err error
	if a.Password, a.PasswordEncryptionEnabled, err = k.storeSecret(c.Password, cur.Password, cur.PasswordEncryptionEnabled, enc); err != nil {
		return config.Auth{}, err
	}
	if a.MutualPassword, a.MutualPasswordEncryptionEnabled, err = k.storeSecret(c.MutualPassword, cur.MutualPassword, cur.MutualPasswordEncryptionEnabled, enc); err != nil {
		return config.Auth{}, err
	}
	return a, nil
}

func (k chapKeys) storeSecret(plain, curStored string, curEnc, enc bool) (string, bool, error) {
	if old, err := k.plain(curStored, curEnc); err == nil && old == plain && curEnc == enc {
		return curStored, curEnc, nil
	}
	if plain == "" || !enc {
		return plain, enc, nil
	}
	s, err := k.encrypt(plain)
	return s, true, err
}

// decryptAuth returns a copy of a with clear-text passwords, for
// GET /api/config?decrypt_passwords=true.
func (k chapKeys) decryptAuth(a config.Auth) (config.Auth, error) {
	var err error
	if a.Password, err = k.plain(a.Password, a.PasswordEncryptionEnabled); err != nil {
		return a, err
	}
	if a.MutualPassword, err = k.plain(a.MutualPassword, a.MutualPasswordEncryptionEnabled); err != nil {
		return a, err
	}
	return a, nil
}
