# nginx from Debian, laid out like the official image: conf.d/default.conf is the site,
# logs go to the container's stdout/stderr, curl for the health check, and the stream module
# (a preview host's front passes TLS through by server name, as the official image can).
ARG BASE=hitsave-base/debian:bookworm
FROM ${BASE}
# Debian's nginx.conf sets TLS protocols and cipher order for every site; the official image's
# does not, and the site (conf.d/default.conf) sets its own: those lines go.
RUN apt-get update \
 && apt-get install -y --no-install-recommends nginx libnginx-mod-stream curl ca-certificates \
 && rm -rf /var/lib/apt/lists/* /etc/nginx/sites-enabled/* \
 && sed -i '/ssl_protocols\|ssl_prefer_server_ciphers/d' /etc/nginx/nginx.conf \
 && ln -sf /dev/stdout /var/log/nginx/access.log \
 && ln -sf /dev/stderr /var/log/nginx/error.log
STOPSIGNAL SIGQUIT
EXPOSE 80 443
CMD ["nginx", "-g", "daemon off;"]
