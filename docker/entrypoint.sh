#!/bin/sh
# The image's entrypoint: run the command as the user `trader`, who owns the mounted data/.
# Started as root (the default), it gives `trader` the uid and gid of the owner of
# /home/trader/app/data (the host's ./data when compose mounts it), so the container can write
# there and the files it writes belong to the host's user, whatever their uid. Then it drops root.
# Started as another user (`docker run --user`), it runs the command as that user.
set -e
app=/home/trader/app
if [ "$(id -u)" = 0 ]; then
    uid=$(stat -c %u "$app/data")
    gid=$(stat -c %g "$app/data")
    if [ "$uid" != "$(id -u trader)" ] || [ "$gid" != "$(id -g trader)" ]; then
        groupmod --non-unique --gid "$gid" trader
        usermod --non-unique --uid "$uid" --gid "$gid" trader
        # the image's own files (not the mounted data/) follow
        find /home/trader -path "$app/data" -prune -o -exec chown -h "$uid:$gid" {} +
    fi
    exec setpriv --reuid="$uid" --regid="$gid" --init-groups env HOME=/home/trader USER=trader "$@"
fi
exec "$@"
