# Sourced by .ci/run (venv active, apt_install available): what the operator features' tests need beyond
# requirements.txt (docs/deployment.md, "Securing it"):
#   - OpenTelemetry, the optional tracing extra (requirements-tracing.txt): tests/service/test_tracing.py;
#   - the openssl and curl commands: tests/service/test_tls.py makes a self-signed certificate with openssl
#     and checks it with curl (the browser test of CORS needs chromium: 20-browser.sh).
apt_install openssl curl
python -m pip install --quiet --disable-pip-version-check -r requirements-tracing.txt ||
    { echo "50-operator-features.sh: could not install requirements-tracing.txt" >&2; return 1; }
