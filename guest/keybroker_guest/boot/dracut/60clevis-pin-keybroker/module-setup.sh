#!/bin/bash
# dracut module "clevis-pin-keybroker": the clevis pin keybroker and the lean guest client
# it runs, with the network brought up before clevis unlocks, as for the tang pin
# (docs/boot.md). Installed as /usr/lib/dracut/modules.d/60clevis-pin-keybroker/.

check() {
    require_binaries keybroker-guest clevis-decrypt-keybroker || return 1
    return 0
}

depends() {
    echo clevis network
    return 0
}

cmdline() {
    echo "rd.neednet=1"
}

install() {
    if [[ $hostonly_cmdline == "yes" ]]; then
        cmdline > "${initdir}/etc/cmdline.d/60clevis-pin-keybroker.conf"
    fi
    # The client names every file it loads: its interpreter and standard library, itself,
    # cryptography and cffi, and the pin's scripts. ELF files bring their libraries.
    local file
    while IFS= read -r file; do
        if [[ -L $file ]]; then
            inst "$file"
        elif [[ $(head -c 4 "$file") == $'\x7fELF' ]]; then
            inst_binary "$file"
        else
            inst_simple "$file"
        fi
    done < <(keybroker-guest initramfs-files)
}
