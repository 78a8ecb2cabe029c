# Sourced by .ci/run (venv active, apt_install available): what the draw-page browser test needs.
# Debian's chromium, driven by the pip package playwright (pinned in requirements.txt). Never run
# `playwright install`: it downloads a browser build, and only the package registries are reachable.
apt_install chromium
if ! python -c "import playwright.sync_api" 2>/dev/null; then
    python -m pip install --quiet --disable-pip-version-check "$(grep -E '^playwright==' requirements.txt)"
fi
if [ ! -x /usr/bin/chromium ]; then
    echo "20-browser.sh: /usr/bin/chromium is missing after apt_install chromium" >&2
    return 1
fi
