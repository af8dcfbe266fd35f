use strict;
use warnings;

print "before the error\n";
my $x = ;
