#!/usr/bin/python3
"""A real RTSP server for actiond's tests: GStreamer's gst-rtsp-server on loopback.

usage: rtsp_server.py PORT MOUNT [FILE] [--user USER --password PASS]

Serves FILE (decoded and re-encoded as H.264 at its own pace) or a live test pattern at
rtsp://127.0.0.1:PORT/MOUNT until killed. Prints "ready" on stdout once listening.
Run it with Debian's /usr/bin/python3 (the one with the `gi` module).
"""
import argparse
import signal
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("port")
    parser.add_argument("mount")
    parser.add_argument("file", nargs="?")
    parser.add_argument("--user")
    parser.add_argument("--password")
    args = parser.parse_args()

    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(args.port)
    factory = GstRtspServer.RTSPMediaFactory()
    encode = "x264enc tune=zerolatency speed-preset=ultrafast key-int-max=10 ! rtph264pay name=pay0 pt=96 config-interval=1"
    if args.file:
        # Loop-free file serving at real-time pace; clients joining later see the file from the start.
        launch = f'( filesrc location="{args.file}" ! decodebin ! videoconvert ! videorate ! video/x-raw,framerate=10/1 ! {encode} )'
    else:
        launch = f"( videotestsrc is-live=true pattern=ball ! video/x-raw,width=320,height=240,framerate=10/1 ! {encode} )"
    factory.set_launch(launch)
    factory.set_shared(True)
    if args.user:
        auth = GstRtspServer.RTSPAuth()
        token = GstRtspServer.RTSPToken()
        token.set_string(GstRtspServer.RTSP_TOKEN_MEDIA_FACTORY_ROLE, "user")
        auth.add_basic(GstRtspServer.RTSPAuth.make_basic(args.user, args.password), token)
        server.set_auth(auth)
        permissions = GstRtspServer.RTSPPermissions()
        permissions.add_permission_for_role("user", GstRtspServer.RTSP_PERM_MEDIA_FACTORY_ACCESS, True)
        permissions.add_permission_for_role("user", GstRtspServer.RTSP_PERM_MEDIA_FACTORY_CONSTRUCT, True)
        factory.set_permissions(permissions)
    server.get_mount_points().add_factory("/" + args.mount, factory)
    if server.attach(None) == 0:
        print("cannot listen on port", args.port, file=sys.stderr)
        sys.exit(1)
    loop = GLib.MainLoop()
    signal.signal(signal.SIGTERM, lambda *_: loop.quit())
    print("ready", flush=True)
    loop.run()


if __name__ == "__main__":
    main()
