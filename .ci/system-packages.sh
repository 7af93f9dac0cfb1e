#!/usr/bin/env bash
# Debian packages the project uses when they are there:
#   libharfbuzz-subset0  makes PDF rendering about 8x faster;
#   softhsm2             a PKCS#11 token for the tests of signing on a token (HSM);
#   poppler-utils        pdfsig, an independent check of the PDF signatures in the tests;
#   chromium             a real headless browser for the tests of the HTML view (`view`).
# Without them everything still works: rendering is slower and those tests skip, saying why.
set -u
wanted=(libharfbuzz-subset0 softhsm2 poppler-utils chromium)
missing=()
for package in "${wanted[@]}"; do
  dpkg -s "$package" >/dev/null 2>&1 || missing+=("$package")
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  echo "installing Debian packages: ${missing[*]}"
  if (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}") >/dev/null 2>&1; then
    exit 0
  fi
  echo "note: could not install ${missing[*]}; rendering may be slower and the HSM, pdfsig and browser tests will skip"
else
  echo "note: install Debian's ${missing[*]} (needs root) for faster rendering and the HSM, pdfsig and browser tests"
fi
exit 0
