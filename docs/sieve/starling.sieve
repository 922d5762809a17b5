# Files mail the Starling milter flagged as spam into the spam folder.
#
# Install as a global "before" script (see docs/milter.md):
#   sieve_before = /etc/dovecot/sieve/starling.sieve
# then `sievec /etc/dovecot/sieve/starling.sieve`.
#
# The folder must be the one the agent files into: [policy] spam_folder,
# "Spam" when that is empty (or the folder with the \Junk special use, when
# the server has one: then name it here).
require ["fileinto", "mailbox"];

if header :is "X-Spam-Flag" "YES" {
  fileinto :create "Spam";
  stop;
}
