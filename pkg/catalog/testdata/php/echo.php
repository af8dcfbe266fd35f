<?php
$line = fgets(STDIN);
echo rtrim($line === false ? "" : $line, "\n"), "\n";
