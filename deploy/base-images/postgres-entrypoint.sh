#!/bin/sh
# First start: initialise $PGDATA with the user, password (read from POSTGRES_PASSWORD_FILE,
# never from the environment or arguments) and database; then run PostgreSQL as `postgres`.
set -eu
user="${POSTGRES_USER:-postgres}"
db="${POSTGRES_DB:-$user}"
if [ "$(id -u)" = 0 ]; then
    mkdir -p "$PGDATA" /run/postgresql
    chown postgres:postgres "$PGDATA" /run/postgresql
    chmod 700 "$PGDATA"
    if [ ! -s "$PGDATA/PG_VERSION" ]; then
        : "${POSTGRES_PASSWORD_FILE:?POSTGRES_PASSWORD_FILE must name the password file}"
        pwfile=$(mktemp)
        # As root: the secret file is root-owned and private.
        cat "$POSTGRES_PASSWORD_FILE" > "$pwfile"
        chown postgres "$pwfile"
        setpriv --reuid=postgres --regid=postgres --init-groups \
            initdb --username="$user" --pwfile="$pwfile" --auth-host=scram-sha-256 \
                   --auth-local=trust --encoding=UTF8 -D "$PGDATA" >/dev/null
        rm -f "$pwfile"
        # As postgres, whose files these are: root here has no right to write them (the
        # container keeps only the capabilities this script needs; none overrides access).
        setpriv --reuid=postgres --regid=postgres --init-groups sh -c '
            echo "listen_addresses = '"'*'"'" >> "$PGDATA/postgresql.conf"
            echo "host all all all scram-sha-256" >> "$PGDATA/pg_hba.conf"'
        if [ "$db" != postgres ]; then
            setpriv --reuid=postgres --regid=postgres --init-groups \
                postgres --single -D "$PGDATA" postgres <<SQL >/dev/null
CREATE DATABASE "$db" OWNER "$user";
SQL
        fi
        echo "docker-entrypoint: initialised $PGDATA (user $user, database $db)"
    fi
    exec setpriv --reuid=postgres --regid=postgres --init-groups "$@" -D "$PGDATA"
fi
exec "$@" -D "$PGDATA"
