#!/bin/sh
# Stage 2 of a ferry-lab VM, on the overlay root: the mounts a host has (cgroup v1 hierarchies
# as on the machine the lab was built for, tmpfs where overlayfs cannot be stacked on), the
# kernel's modules, then the command. Its exit status goes to the console for ferry-lab vm.
. /.ferry-vm/kernel
PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export PATH
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mkdir -p /dev/pts /dev/shm /dev/mqueue
mount -t devpts -o newinstance,ptmxmode=0666 devpts /dev/pts
mount -t tmpfs shm /dev/shm
mount -t mqueue mqueue /dev/mqueue
# /var/lib starts empty: containerd's overlayfs snapshots cannot live on the overlay root.
# The command's working directory stays visible even under one of them (a checkout in /tmp):
# it is set aside first and put back on top.
keep=
if [ -n "$WORKDIR" ] && [ -d "$WORKDIR" ]; then
  case "$WORKDIR/" in
  /run/*|/tmp/*|/var/tmp/*|/var/lib/*)
    keep=/.ferry-vm/workdir
    mkdir -p "$keep" && mount --bind "$WORKDIR" "$keep" ;;
  esac
fi
for d in /run /tmp /var/tmp /var/lib; do
  mount -t tmpfs -o mode=0755 tmpfs "$d"
done
chmod 1777 /tmp /var/tmp
if [ -n "$keep" ]; then
  mkdir -p "$WORKDIR" && mount --move "$keep" "$WORKDIR"
fi
mkdir -p "/lib/modules/$KVER" && mount --bind "$KMODULES" "/lib/modules/$KVER"
mount -t tmpfs -o mode=0755 cgroup /sys/fs/cgroup
for c in cpuset cpu,cpuacct blkio memory devices freezer net_cls,net_prio perf_event hugetlb pids rdma misc; do
  mkdir -p "/sys/fs/cgroup/$c"
  mount -t cgroup -o "$c" cgroup "/sys/fs/cgroup/$c" 2>/dev/null || rmdir "/sys/fs/cgroup/$c"
done
mkdir -p /sys/fs/cgroup/unified && mount -t cgroup2 cgroup2 /sys/fs/cgroup/unified
mount -t bpf bpf /sys/fs/bpf 2>/dev/null
for m in tun veth bridge nf_tables nf_conntrack unix_diag inet_diag tcp_diag udp_diag netlink_diag af_packet_diag fuse overlay; do
  modprobe -q "$m" 2>/dev/null || echo "ferry-vm: no module $m"
done
# Transparent huge pages as on the machine (Debian's kernel defaults to "always"): soft-dirty
# tracks a huge page as one, so with "always" scattered writes re-dirty whole 2 MiB pages.
thp=/sys/kernel/mm/transparent_hugepage/enabled
[ -w "$thp" ] && echo "${FERRY_VM_THP:-madvise}" > "$thp"
ip link set lo up
hostname ferry-vm
echo "FERRY-VM-START"
# Shortly before ferry-lab gives up on the VM, say what is stuck: the kernel's list of blocked
# tasks with their stacks (sysrq w, read back from the ring buffer: the console only shows
# errors) and the process tree (ps under a timeout: it can hang on a task that holds its mm).
watchdog=
if [ "${WATCHDOG:-0}" -gt 0 ]; then
  (
    sleep "$WATCHDOG"
    echo "ferry-vm: the command still runs after ${WATCHDOG}s; what is blocked:"
    echo w > /proc/sysrq-trigger
    sleep 2
    dmesg | sed -n '/sysrq: Show Blocked State/,$p' | tail -n 600
    echo "ferry-vm: processes:"
    timeout 30 ps -eo pid,ppid,stat,etimes,wchan:24,args --forest
  ) &
  watchdog=$!
fi
/bin/sh /.ferry-vm/command
rc=$?
[ -n "$watchdog" ] && kill "$watchdog" 2>/dev/null
sync
echo "FERRY-VM-EXIT=$rc"
echo o > /proc/sysrq-trigger
sleep 60
