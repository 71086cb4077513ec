#!/usr/bin/env bash
# Install the Debian packages keybroker needs, only when they are missing (idempotent).
#   softhsm2     the PKCS#11 token used by `make run` and the tests
#   opensc       pkcs11-tool, to inspect a token by hand
#   postgresql   only when no initdb binary exists anywhere we look
#   ovmf         a real TDVF-carrying firmware build, whose metadata a test reads
#   swtpm, tpm2-tools, libtss2-tcti-swtpm0
#                the software TPM and the tools the simulated vTPM guests run against it
#   openssl      `openssl cms -decrypt` opens the KMS endpoint's CiphertextForRecipient in tests
#   clevis, clevis-luks, cryptsetup-bin
#                the keybroker clevis pin's tests run Debian's clevis (docs/boot.md)
#   chromium, chromium-driver
#                the headless browser (and its WebDriver) the console's tests drive with selenium
set -euo pipefail

missing=()
[ -e /usr/lib/softhsm/libsofthsm2.so ] || command -v softhsm2-util >/dev/null 2>&1 || missing+=(softhsm2)
command -v pkcs11-tool >/dev/null 2>&1 || missing+=(opensc)
[ -e /usr/share/ovmf/OVMF.fd ] || missing+=(ovmf)
command -v swtpm >/dev/null 2>&1 || missing+=(swtpm)
command -v tpm2_quote >/dev/null 2>&1 || missing+=(tpm2-tools)
ls /usr/lib/*/libtss2-tcti-swtpm.so.0 >/dev/null 2>&1 || missing+=(libtss2-tcti-swtpm0)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
command -v clevis >/dev/null 2>&1 || missing+=(clevis)
command -v clevis-luks-bind >/dev/null 2>&1 || missing+=(clevis-luks)
command -v cryptsetup >/dev/null 2>&1 || missing+=(cryptsetup-bin)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v chromedriver >/dev/null 2>&1 || missing+=(chromium-driver)
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && ! command -v initdb >/dev/null 2>&1; then
  missing+=(postgresql)
fi
# Debian's own python3 ships venv without ensurepip; the python3-venv package adds it.
python="${PYTHON:-python3}"
if ! "$python" -c "import ensurepip, venv" >/dev/null 2>&1; then
  if [ "$("$python" -c 'import sys; print(sys.prefix)' 2>/dev/null)" = "/usr" ]; then
    missing+=("python3-venv")
  else
    echo "$python has no ensurepip and is not Debian's python3; install venv support for it" >&2
    exit 1
  fi
fi
[ ${#missing[@]} -eq 0 ] && exit 0

echo "installing Debian packages: ${missing[*]}" >&2
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null 2>&1 || { echo "need root or sudo to install ${missing[*]}" >&2; exit 1; }
  sudo="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
# The package index may be stale or absent on a fresh machine; refresh once if install fails.
$sudo apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null 2>&1 \
  || { $sudo apt-get update -q >/dev/null && $sudo apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null; }
