#!/bin/sh
# nginx_front.sh PORT SCRATCH UPSTREAM_PORT: our service the way gunicorn's documentation recommends
# deploying a sync or threaded worker: behind a buffering proxy. gunicorn with gthread workers (4 threads)
# listens on 127.0.0.1:UPSTREAM_PORT; nginx (Debian's nginx-light) buffers each whole request and response
# and forwards them over keep-alive connections. Used by bench/peers.py (server "ours-nginx") to measure that option against
# the shipped one (service/worker.py), which reads whole requests itself.
set -eu
port=$1
scratch=$2
upstream=$3
mkdir -p "$scratch/nginx"
cat >"$scratch/nginx/nginx.conf" <<CONF
worker_processes 1;
pid $scratch/nginx/nginx.pid;
error_log stderr warn;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $scratch/nginx/body;
    proxy_temp_path $scratch/nginx/proxy;
    client_max_body_size 4m;
    client_header_timeout 5s;
    client_body_timeout 10s;
    keepalive_timeout 5s;
    upstream service { server 127.0.0.1:$upstream; keepalive 32; }
    server {
        listen 127.0.0.1:$port;
        location / {
            proxy_pass http://service;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_request_buffering on;
            proxy_buffering on;
        }
    }
}
CONF
python -m gunicorn -c service/gunicorn.conf.py -k gthread --threads 4 --bind "127.0.0.1:$upstream" \
    "service.app:create_app()" &
exec nginx -p "$scratch/nginx" -c "$scratch/nginx/nginx.conf" -g "daemon off;"
