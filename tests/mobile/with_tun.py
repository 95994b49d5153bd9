"""Opens a TUN device (pltun0, IFF_TUN | IFF_NO_PI) as Android's VpnService.establish() would,
and runs the given command with the descriptor inherited; its number is in PL_TUN_FD.

    python3 with_tun.py java -cp ... lan.planetary.apptest.TunApp ...
"""
import fcntl
import os
import struct
import sys

TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000

fd = os.open("/dev/net/tun", os.O_RDWR)
fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", b"pltun0", IFF_TUN | IFF_NO_PI))
os.set_inheritable(fd, True)
os.environ["PL_TUN_FD"] = str(fd)
os.execvp(sys.argv[1], sys.argv[1:])
