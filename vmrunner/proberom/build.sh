#!/bin/sh
# Assembles probe.S into probe.bin (flat code, loaded at offset 0 of the probe ROM). Needs GNU binutils.
set -eu
cd "$(dirname "$0")"
as --64 -o probe.o probe.S
objcopy -O binary -j .text probe.o probe.bin
rm -f probe.o
