#!/usr/bin/env bash
# Install the Debian tools the test suite uses as real peers: dcmtk (dcmdump, storescp,
# storescu, echoscu), dicom3tools (dciodvfy), Orthanc with DICOMweb, and asl-validator
# from npm. Runs apt only for what is missing, and only as root; otherwise
# it says what to install and the tests that need a tool skip.
set -euo pipefail
need=()
command -v dcmdump >/dev/null 2>&1 || need+=(dcmtk)
command -v dciodvfy >/dev/null 2>&1 || need+=(dicom3tools)
# Orthanc and its DICOMweb plugin: the PACS that `medpipe send` is tested against.
command -v Orthanc >/dev/null 2>&1 || need+=(orthanc)
[ -e /usr/share/orthanc/plugins/libOrthancDicomWeb.so ] || need+=(orthanc-dicomweb)
# Headless Chromium renders report.html in a screenshot test.
if [ "${1:-}" != "bench" ]; then
  command -v chromium >/dev/null 2>&1 || need+=(chromium)
fi
# unshare and ip put peers that bind every interface in a loopback-only namespace.
command -v unshare >/dev/null 2>&1 || need+=(util-linux)
command -v ip >/dev/null 2>&1 || need+=(iproute2)
# Tesseract: Clean Pixel Data's independent second reader (--pixel-verify tesseract).
command -v tesseract >/dev/null 2>&1 || need+=(tesseract-ocr tesseract-ocr-eng)
# Fonts the burned-in text generator draws with (tests and make bench).
[ -e /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || need+=(fonts-dejavu-core)
[ -d /usr/share/fonts/truetype/liberation2 ] || need+=(fonts-liberation2)
if [ "${1:-}" = "bench" ]; then
  # The benchmark's C++ peer (gdcmanon) and the certificate it encrypts with.
  command -v gdcmanon >/dev/null 2>&1 || need+=(libgdcm-tools)
  command -v openssl >/dev/null 2>&1 || need+=(openssl)
fi
# asl-validator (npm) checks the state machine definitions, and @cloud-copilot/iam-simulate
# evaluates every AWS request of the stack against its policies (identity, resource, KMS key,
# with conditions) as AWS does; both kept out of git in tools/, installed in one command so
# that neither prunes the other.
if command -v npm >/dev/null 2>&1 && { [ ! -x tools/node_modules/.bin/asl-validator ] || \
    [ ! -d tools/node_modules/@cloud-copilot/iam-simulate ]; }; then
  echo "installing asl-validator and iam-simulate into tools/" >&2
  npm install --silent --no-audit --no-fund --no-save --no-package-lock \
    --prefix tools asl-validator@4.0.0 @cloud-copilot/iam-simulate@0.1.173 >/dev/null
fi
# The template's own checkers, each in a venv of its own under tools/ (their pins clash
# with the project's): aws-sam-cli for `sam validate` (offline) and checkov.
py="${PYTHON:-python3}"
install_tool() {  # name, requirement, binary
  if [ ! -x "tools/$1/bin/$3" ]; then
    echo "installing $2 into tools/$1" >&2
    rm -rf "tools/$1"
    "$py" -m venv "tools/$1"
    "tools/$1/bin/pip" install -q --disable-pip-version-check "$2" >/dev/null
  fi
}
# pandas for the README's research lines, kept out of the venv: with pandas importable,
# pyarrow imports it (0.6 s) whenever it builds an array, and every run would pay that.
if [ "${1:-}" != "bench" ] && [ ! -d tools/pandas/pandas ]; then
  echo "installing pandas into tools/pandas" >&2
  "$py" -m pip install -q --disable-pip-version-check --no-deps --target tools/pandas \
    "pandas>=2,<4" >/dev/null
fi
if [ "${1:-}" != "bench" ]; then
  install_tool sam "aws-sam-cli==1.170.0" sam
  install_tool checkov "checkov==3.3.30" checkov
fi
if [ ${#need[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "note: install ${need[*]} (Debian packages) to run the peer tests; they will be skipped" >&2
  exit 0
fi
echo "installing ${need[*]} from Debian" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
