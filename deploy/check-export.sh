#!/bin/sh
# check-export.sh SRC DEST [CONTRACT]: stage the model export for the image (run by the Dockerfile's
# "assets" stage).
#
# SRC is the build context's exports/mnist/ (absent when nothing was trained). Every complete version
# folder is copied to DEST; temporary ".tmp-*" exports and stray files are left out. Which folders are
# complete versions is decided by service/contract.py (CONTRACT, default /app/service/contract.py), the
# one definition training and the service use too. With no complete version the build stops here, within seconds and
# before the long pip install, unless REQUIRE_MODEL=0, which builds a model-less image meant to serve
# a volume mounted at /models (it answers /readyz with 503 until a version appears there).
set -eu

src=$1
dest=$2
contract=${3:-/app/service/contract.py}
found=0
versions=""
mkdir -p "$dest"
complete=$(python3 "$contract" complete-versions "$src")
for version in $complete; do
    cp -R "$src/$version" "$dest/$version"
    found=$((found + 1))
    versions="$versions $version"
done

if [ "$found" -eq 0 ]; then
    if [ "${REQUIRE_MODEL:-1}" = 0 ]; then
        echo "check-export: WARNING: no model export in the build context; building a model-less" \
            "image (REQUIRE_MODEL=0): mount an export base at /models (e.g. -v \$PWD/exports:/models:ro)." >&2
    else
        cat >&2 <<'EOF'

ERROR: no model export in exports/mnist/ of the build context.
  The image bakes the trained model in. Train one first, then build again:
      python training/train.py            # writes exports/mnist/<version>/
      docker build -t mnist-digits .
  Or build a model-less image that serves a volume mounted at /models:
      docker build --build-arg REQUIRE_MODEL=0 -t mnist-digits .
      docker run -v "$PWD/exports:/models:ro" -p 8000:8000 mnist-digits

EOF
        exit 1
    fi
else
    echo "check-export: baking $found model version(s) into $dest:$versions"
fi

# Readable (not writable) by everyone, whatever umask the exporting machine had: the service runs as
# an unprivileged user. The base folder itself belongs to that user so that a training job running as
# the same user can add versions to a volume initialised from the image (docker-compose.yml).
chmod -R a+rX,go-w "$dest"
