# Sourced by the SSH benchmarks: starts a throw-away sshd on a free loopback
# port with its own keys in $work (which the caller made), stopped by its pid
# on exit. Sets: port, user, ssh_opts, host_yaml.
[ "$(id -u)" = 0 ] && mkdir -p /run/sshd
ssh-keygen -q -t ed25519 -N '' -f "$work/host_key"
ssh-keygen -q -t ed25519 -N '' -f "$work/client_key"
cp "$work/client_key.pub" "$work/authorized_keys"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
user=$(id -un)
cat > "$work/sshd_config" <<CFG
Port $port
ListenAddress 127.0.0.1
HostKey $work/host_key
AuthorizedKeysFile $work/authorized_keys
PidFile $work/sshd.pid
PasswordAuthentication no
PubkeyAuthentication yes
PermitRootLogin prohibit-password
StrictModes no
UsePAM no
MaxSessions 200
MaxStartups 200
CFG
/usr/sbin/sshd -f "$work/sshd_config" -E "$work/sshd.log"
echo "[127.0.0.1]:$port $(cut -d' ' -f1,2 "$work/host_key.pub")" > "$work/known_hosts"
sleep 0.5
ssh_opts=(-p "$port" -i "$work/client_key" -o IdentitiesOnly=yes -o UserKnownHostsFile="$work/known_hosts" -o BatchMode=yes)
host_yaml="hosts:
  box:
    address: 127.0.0.1
    port: $port
    user: $user
    identity_file: $work/client_key
    known_hosts_file: $work/known_hosts
"
