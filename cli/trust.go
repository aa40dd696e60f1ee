package cli

import (
	"fmt"

	"github.com/kilnproject/kiln/ota/repo"
)

// trustedRoot returns the OTA trust root (TUF root metadata) that `kiln build` bakes into the image
// as /etc/kiln/root.json: the owner's, from the signing keys in the user's config directory
// ($KILN_KEYS overrides), generated on first use. Devices then accept only updates signed with
// these keys.
func trustedRoot(env *Env) ([]byte, error) {
	keys, err := repo.OwnerKeys()
	if err != nil {
		return nil, err
	}
	if keys.Created {
		fmt.Fprintf(env.Stderr, "kiln: created update signing keys in %s; back this directory up: images built now accept updates signed with these keys only\n", keys.Dir)
	}
	return keys.Root, nil
}
