// Debian's prebuilt kernels against fake apt and dpkg-deb that serve a small
// made-up index: which build is picked, which packages are fetched (kbuild
// of the host's arch for a cross build), what the unpacked entry holds, and
// that a second call reuses it.
import { chmodSync, existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { getArch } from '../../../harness/core/arch.js';
import { silentLogger } from '../../../harness/core/log.js';
import { parseIndexRecords } from '../../../harness/image/apt.js';
import { DEBIAN_IMAGES, debianImage, kbuildOf, newestAbi, packageNames, parseImageList } from '../../../harness/kernel/debian-images.js';
import { tempDir } from '../../helpers.js';

const R61 = DEBIAN_IMAGES.find((r) => r.name === 'debian-image:6.1')!;

// The made-up index: two 6.1 ABIs, a cloud flavour, and a bullseye backport whose version is higher but whose ABI is not bookworm's.
const APT_CACHE = `#!/bin/bash
arch= args=()
while [ $# -gt 0 ]; do
  case "$1" in -o) case "$2" in APT::Architecture=*) arch=\${2#*=} ;; esac; shift ;; *) args+=("$1") ;; esac; shift
done
fl=amd64; [ "$arch" = ppc64el ] && fl=powerpc64le
version() { case "$1" in *6.1.0-7-*) echo 6.1.20-1 ;; *0.deb11*) echo 6.1.99-1~deb11u1 ;; *) echo 6.1.27-1 ;; esac; }
case "\${args[0]}" in
  pkgnames) printf '%s\\n' linux-headers-6.1.0-7-$fl linux-headers-6.1.0-9-$fl linux-headers-6.1.0-9-cloud-$fl linux-headers-6.1.0-0.deb11.5-$fl linux-headers-6.1.0-9-common ;;
  show) for p in "\${args[@]:1}"; do
      a=$arch; case "$p" in *-common) a=all ;; esac
      printf 'Package: %s\\nVersion: %s\\nArchitecture: %s\\nSize: 10\\nSHA256: %s\\n' "$p" "$(version "$p")" "$a" "$(echo "deb:$p" | sha256sum | cut -d' ' -f1)"
      case "$p" in linux-headers-*-$fl) echo "Depends: linux-headers-6.1.0-9-common (= 6.1.27-1), linux-kbuild-6.1 (>= 6.1.27-1), gcc-12" ;; esac
      echo
    done ;;
esac
`;
const APT_GET = `#!/bin/bash
lists= arch= args=()
while [ $# -gt 0 ]; do
  case "$1" in -o) case "$2" in Dir::State::Lists=*) lists=\${2#*=} ;; APT::Architecture=*) arch=\${2#*=} ;; esac; shift ;; *) args+=("$1") ;; esac; shift
done
case "\${args[0]}" in
  update) echo fake > "$lists/fake_Packages"; echo "$arch" >> "$(dirname "$(dirname "$lists")")/updates" ;;
  download) for p in "\${args[@]:1}"; do n=\${p%%=*} v=\${p#*=}; a=$arch; case "$n" in *-common) a=all ;; esac; echo "deb:$n" > "\${n}_\${v}_$a.deb"; done ;;
esac
`;
const DPKG_DEB = `#!/bin/bash
deb=$(basename "$2") root=$3 n=\${deb%%_*} a=\${deb##*_}
case "$n" in
  linux-image-*) r=\${n#linux-image-}; r=\${r%-unsigned}; m="$root/lib/modules/$r"
    mkdir -p "$root/boot" "$m/kernel/drivers/virtio" "$m/kernel/drivers/net"
    [ "$r" = "\${r%powerpc64le}" ] && echo kernel > "$root/boot/vmlinuz-$r" || echo kernel > "$root/boot/vmlinux-$r"
    for k in virtio virtio_pci virtio_net; do echo "$k" > "$m/kernel/drivers/$k.ko"; done
    printf 'kernel/drivers/virtio.ko:\\nkernel/drivers/virtio_pci.ko: kernel/drivers/virtio.ko\\nkernel/drivers/virtio_net.ko: kernel/drivers/virtio.ko\\n' > "$m/modules.dep"
    echo kernel/drivers/char/hw_random/virtio-rng.ko > "$m/modules.builtin" ;;
  linux-headers-*-common) mkdir -p "$root/usr/src/$n"; echo "# common" > "$root/usr/src/$n/Makefile" ;;
  linux-headers-*) mkdir -p "$root/usr/src/$n"; ln -s ../../lib/linux-kbuild-6.1/scripts "$root/usr/src/$n/scripts"; echo 'include /usr/src/linux-headers-6.1.0-9-common/Makefile' > "$root/usr/src/$n/Makefile"
    printf 'CONFIG_LIVEPATCH=y\\nCONFIG_CC_VERSION_TEXT="gcc-12 (Debian 12.2.0-14) 12.2.0"\\n' > "$root/usr/src/$n/.config" ;;
  linux-kbuild-*) mkdir -p "$root/usr/lib/$n/scripts"; echo "$a" > "$root/usr/lib/$n/scripts/built-for" ;;
esac
`;

function fakeApt(t: Parameters<typeof tempDir>[0]) {
  const bin = tempDir(t);
  for (const [name, text] of Object.entries({ 'apt-cache': APT_CACHE, 'apt-get': APT_GET, 'dpkg-deb': DPKG_DEB })) {
    writeFileSync(join(bin, name), text);
    chmodSync(join(bin, name), 0o755);
  }
  const old = process.env.PATH;
  process.env.PATH = `${bin}:${old}`;
  t.teardown(() => void (process.env.PATH = old));
}

t.test('package names per layout and arch: the unsigned image where a signed twin exists', async (t) => {
  t.same(packageNames(R61, 'amd64', '6.1.0-9'), { image: ['linux-image-6.1.0-9-amd64-unsigned'], headers: ['linux-headers-6.1.0-9-amd64', 'linux-headers-6.1.0-9-common'] });
  t.same(packageNames(R61, 'ppc64el', '6.1.0-9').image, ['linux-image-6.1.0-9-powerpc64le']);
  const r72 = DEBIAN_IMAGES.find((r) => r.line === '7.2')!;
  t.same(packageNames(r72, 'amd64', '7.2.13+deb14').image, ['linux-binary-unsigned-7.2.13+deb14-amd64', 'linux-modules-7.2.13+deb14-amd64']);
  t.same(packageNames(r72, 'ppc64el', '7.2.13+deb14').image, ['linux-binary-7.2.13+deb14-powerpc64le', 'linux-modules-7.2.13+deb14-powerpc64le']);
});

t.test("the newest ABI of the line: by package version, only the plain flavour, only this line's ABIs", async (t) => {
  const records = parseIndexRecords(
    ['6.1.0-7-amd64 6.1.20-1', '6.1.0-9-amd64 6.1.27-1', '6.1.0-10-cloud-amd64 6.1.30-1', '6.1.0-0.deb11.5-amd64 6.1.99-1~deb11u1']
      .map((l) => `Package: linux-headers-${l.split(' ')[0]}\nVersion: ${l.split(' ')[1]}\nArchitecture: amd64\n`)
      .join('\n'),
  );
  t.match(newestAbi(R61, 'amd64', records), { abi: '6.1.0-9', version: '6.1.27-1' });
  t.equal(newestAbi(R61, 'ppc64el', records), undefined);
  t.equal(kbuildOf('Package: linux-headers-6.1.0-9-amd64\nDepends: linux-headers-6.1.0-9-common (= 6.1.27-1), linux-kbuild-6.1 (>= 6.1.27-1)\n'), 'linux-kbuild-6.1');
  t.equal(kbuildOf('Depends: linux-base (>= 4.12~), linux-kbuild-6.12.117+deb13, gcc-14\n'), 'linux-kbuild-6.12.117+deb13');
});

t.test('--kernel debian-image names: unknown and mixed lists are usage errors', async (t) => {
  t.same(parseImageList('debian-image:6.1,debian-image:7.2').map((r) => r.line), ['6.1', '7.2']);
  const e = (() => {
    try {
      parseImageList('debian-image:4.19');
    } catch (err) {
      return err as { kind?: string; context?: { hint?: string } };
    }
  })();
  t.equal(e?.kind, 'usage');
  t.match(e?.context?.hint, /debian-image:6\.1/);
  t.throws(() => parseImageList('debian-image:6.1,debian:6.1'), /mixes kernels built here/);
});

t.test('fetch: the newest build, checked and unpacked once; a cross build takes kbuild of the host arch; reused after', async (t) => {
  fakeApt(t);
  const cache = tempDir(t);
  const k = await debianImage(R61, getArch('ppc64le'), cache, silentLogger);
  t.match(k, { release: '6.1.0-9-powerpc64le', version: '6.1.27-1', line: '6.1', label: 'debian-image 6.1.0-9 ppc64el', reused: false });
  t.ok(k.image.endsWith('boot/vmlinux-6.1.0-9-powerpc64le') && existsSync(k.image));
  t.match(k.origin, /linux-image-6\.1\.0-9-powerpc64le .*linux-headers-6\.1\.0-9-common .*linux-kbuild-6\.1 \(6\.1\.27-1\)/);
  t.equal(readFileSync(join(k.buildDir, 'scripts/built-for'), 'utf8').trim(), 'amd64.deb', "kbuild's programs are the host's");
  t.equal(readFileSync(join(k.buildDir, 'Makefile'), 'utf8').trim(), `include ${join(k.buildDir, '..')}/linux-headers-6.1.0-9-common/Makefile`, 'the include points into the cache');
  t.match(k.config, /CONFIG_LIVEPATCH=y/);
  t.ok(existsSync(join(k.modulesDir, 'modules.dep')));
  const again = await debianImage(R61, getArch('ppc64le'), cache, silentLogger);
  t.match(again, { release: k.release, key: k.key, reused: true });
  const updates = readFileSync(join(cache, 'apt/updates'), 'utf8').trim().split('\n');
  t.same(updates, ['ppc64el', 'amd64'], 'the second call asked no index');
  t.rejects(debianImage({ ...R61, suites: { amd64: R61.suites.amd64! } }, getArch('ppc64le'), cache, silentLogger, true), /publishes no debian-image:6\.1 for ppc64le/);
});
