#!/bin/busybox sh
# Stage 1 of a ferry-lab VM (busybox, in the initramfs): mount this machine's root, shared
# read-only over 9p, under a tmpfs overlay, and switch to it.
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
fail() { echo "ferry-vm: $*"; echo "FERRY-VM-EXIT=126"; echo o > /proc/sysrq-trigger; sleep 60; }
while read -r m; do
  insmod "/modules/$m" || fail "cannot load $m"
done < /modules/order
mount -t 9p -o trans=virtio,version=9p2000.L,ro,cache=loose,msize=262144 hostroot /lower || fail "cannot mount the host's root over 9p"
mount -t tmpfs -o mode=0755 rw /rw
mkdir -p /rw/upper /rw/work
mount -t overlay -o lowerdir=/lower,upperdir=/rw/upper,workdir=/rw/work root /newroot || fail "cannot mount the overlay root"
mkdir -p /newroot/.ferry-vm
cp /stage2 /command /kernel /newroot/.ferry-vm/
umount /proc /sys /dev
exec switch_root /newroot /bin/sh /.ferry-vm/stage2
